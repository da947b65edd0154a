// An event store for SDK servers that resume streams (Last-Event-ID) in
// tests: events are replayed in the order they were written. The SDK's
// example InMemoryEventStore orders them by id, and two events written in
// the same millisecond then come out in a random order, so a resumed stream
// can miss the answer that followed its priming event (a flaky test, not a
// PEP bug). examples/typescript/events.ts is the same store in TypeScript.
export class OrderedEventStore {
    #next = 0;
    #events = new Map(); // id -> { stream, message }, in insertion order

    async storeEvent(stream, message) {
        const id = `${stream}_${++this.#next}`;
        this.#events.set(id, { stream, message });
        return id;
    }

    async getStreamIdForEventId(id) {
        return this.#events.get(id)?.stream;
    }

    async replayEventsAfter(last, { send }) {
        const from = this.#events.get(last);
        if (!from) return '';
        let after = false;
        for (const [id, e] of this.#events) {
            if (id === last) after = true;
            else if (after && e.stream === from.stream) await send(id, e.message);
        }
        return from.stream;
    }
}
