export type * from './store.js';
export { createSqliteStore } from './sqlite/sqlite-store.js';
