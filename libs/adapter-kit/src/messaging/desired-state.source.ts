/** One raw record of the desired-state topic, before validation. */
export interface DesiredStateRecord {
  key: string | null;
  value: Buffer | null;
  partition: number;
  offset: string;
  /**
   * The record was on the topic before this start (catch-up), not new. Lets the runtime tell history
   * (old, possibly expired decisions a fresh adapter reads on its way to the current one) from new records.
   */
  catchUp?: boolean;
  /**
   * Where the record's partition ended when it was assigned (the next offset to be written then). A system
   * whose last judged record lies at or beyond it has judged records of another incarnation of the topic.
   */
  partitionEnd?: string;
}

/** Handles one record; a rejection asks the source to deliver the record again later. */
export type DesiredStateHandler = (record: DesiredStateRecord) => Promise<void>;

/**
 * Delivers the desired-state topic to the runtime: all of it, from the beginning, on every start (the
 * topic is compacted, so that is the current decision for every system), then every new record.
 * Records of one key arrive in order.
 */
export interface DesiredStateSource {
  /**
   * Resolves once the source is consuming; records then flow to `handler`. Records whose key `serves`
   * rejects (other adapters' systems) may be dropped before they reach it — cheaply, in bulk. `caughtUp` is
   * called once, when every record that was on the topic when the source started has been handled (at once
   * if there was none): until then a newer decision may still follow in the history, so the runtime stores
   * what it reads but gives no access back (see `SystemReconciler`).
   */
  start(handler: DesiredStateHandler, serves?: (key: string) => boolean, caughtUp?: () => void): Promise<void>;
  /** Stops delivering; resolves after the record being handled (if any) is done. */
  stop(): Promise<void>;
  isConnected(): boolean;
}
