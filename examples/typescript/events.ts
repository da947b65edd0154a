// The events of a server's SSE streams, kept in memory in the order they
// were written, for clients resuming a stream with Last-Event-ID (--resumable).
// The SDK's own InMemoryEventStore (in its examples) orders events by id,
// and two events written in the same millisecond then come out in a random
// order: a resumed stream can miss the answer that followed its priming event.
import type { EventStore } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

export class OrderedEventStore implements EventStore {
    #next = 0;
    readonly #events = new Map<string, { stream: string; message: JSONRPCMessage }>(); // insertion order

    async storeEvent(stream: string, message: JSONRPCMessage): Promise<string> {
        const id = `${stream}_${++this.#next}`;
        this.#events.set(id, { stream, message });
        return id;
    }

    async getStreamIdForEventId(id: string): Promise<string | undefined> {
        return this.#events.get(id)?.stream;
    }

    async replayEventsAfter(last: string, { send }: { send: (id: string, message: JSONRPCMessage) => Promise<void> }): Promise<string> {
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
