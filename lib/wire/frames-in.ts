/**
 * How many frames the connections of this process have decoded from bytes, all together
 * (not those handed over as objects in memory: those follow from one that was). The store
 * asks whether any came in while a commit synced, to tell whether the event loop had other
 * work meanwhile (lib/store/sync-place.ts).
 */
export const framesIn = { count: 0 };
