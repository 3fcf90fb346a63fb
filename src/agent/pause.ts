/**
 * A wait that can be cut short: an upload's pause between attempts, which its finish() or
 * close() (or a grant that arrives) ends at once.
 */
export class Pause {
  #wake: (() => void) | undefined;

  /** Waits `ms`, or less if {@link wake} comes first. */
  async for(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
    this.#wake = undefined;
  }

  /** Ends the wait under way, if there is one. */
  wake(): void {
    this.#wake?.();
  }
}
