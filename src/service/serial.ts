/**
 * Per-key serialization: tasks with the same key run one after another in arrival order;
 * tasks with different keys never wait for each other.
 */
export class KeyedSerializer {
  #tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    const result = previous.then(task, task);
    const tail = result.catch(() => {});
    this.#tails.set(key, tail);
    tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    });
    return result;
  }

  /** Keys with queued or running work (for tests and metrics). */
  get busyKeys(): number {
    return this.#tails.size;
  }
}
