// The Responses API objects the mock created, for retrieve, delete, cancel and input_items: a Map
// kept in insertion order and bounded, so a long benchmark cannot grow it without end.

/** One created response and the input items it was asked with. */
export interface StoredResponse {
  /** The response object as last sent or updated (its `status` changes on cancel). */
  readonly response: Record<string, unknown>;
  readonly inputItems: readonly Record<string, unknown>[];
}

/** The last `capacity` responses by id; saving an id again refreshes its place. */
export class ResponseStore {
  private readonly entries = new Map<string, StoredResponse>();

  constructor(private readonly capacity: number) {}

  save(id: string, entry: StoredResponse): void {
    if (this.capacity === 0) return;
    this.entries.delete(id);
    this.entries.set(id, entry);
    if (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next();
      if (oldest.done !== true) this.entries.delete(oldest.value);
    }
  }

  get(id: string): StoredResponse | undefined {
    return this.entries.get(id);
  }

  delete(id: string): boolean {
    return this.entries.delete(id);
  }

  clear(): void {
    this.entries.clear();
  }
}
