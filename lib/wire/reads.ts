/**
 * How many socket reads the connections of this process have taken in, all together. The
 * store asks whether any came in while a commit's fdatasync ran on the thread pool: if none
 * did, the event loop had nothing to do meanwhile (lib/store/sync-place.ts).
 */
export const socketReads = { count: 0 };
