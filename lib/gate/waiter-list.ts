// An intrusive doubly linked FIFO list: each node carries its own links, so appending, taking the
// head and removing any node from the middle are all O(1), and the list allocates nothing per node.

/** What a node of a {@link WaiterList} carries. The list owns these fields; leave them alone. */
export interface WaiterListNode<T> {
  /** The node before this one, or `undefined` at the head (or when not in a list). */
  prev: T | undefined;
  /** The node after this one, or `undefined` at the tail (or when not in a list). */
  next: T | undefined;
  /** True while the node is in a list; makes {@link WaiterList.remove} idempotent. */
  linked: boolean;
}

/**
 * A FIFO queue of nodes that link themselves. A node is in at most one list at a time.
 *
 * @example
 * const list = new WaiterList<Waiter>();
 * list.push(waiter);
 * list.remove(waiter); // O(1), wherever it stands; false if it already left
 * const oldest = list.shift();
 */
export class WaiterList<T extends WaiterListNode<T>> {
  #head: T | undefined = undefined;
  #tail: T | undefined = undefined;
  #length = 0;

  /** Number of nodes in the list. */
  get length(): number {
    return this.#length;
  }

  /** The oldest node, without removing it. */
  peek(): T | undefined {
    return this.#head;
  }

  /** Appends `node` at the tail. Throws if it is already in a list (that would corrupt both). */
  push(node: T): void {
    if (node.linked) throw new Error('WaiterList: node is already in a list');
    node.linked = true;
    node.prev = this.#tail;
    node.next = undefined;
    if (this.#tail === undefined) this.#head = node;
    else this.#tail.next = node;
    this.#tail = node;
    this.#length++;
  }

  /** Removes and returns the oldest node, or `undefined` when the list is empty. */
  shift(): T | undefined {
    const head = this.#head;
    if (head !== undefined) this.remove(head);
    return head;
  }

  /**
   * Removes `node` wherever it stands. Returns false, changing nothing, when the node is not in a
   * list (it was already removed), so two exits racing for one node remove it once.
   */
  remove(node: T): boolean {
    if (!node.linked) return false;
    const { prev, next } = node;
    if (prev === undefined) this.#head = next;
    else prev.next = next;
    if (next === undefined) this.#tail = prev;
    else next.prev = prev;
    node.prev = undefined;
    node.next = undefined;
    node.linked = false;
    this.#length--;
    return true;
  }
}
