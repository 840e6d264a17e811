/**
 * After a backup restore (issue 14): a job that was `running` when the snapshot was taken ran in a
 * queue the backup does not hold (pg-boss's own schema is not dumped: its state is the running
 * processes'), so nothing would ever finish it. It goes back to `queued`, in the restore's load
 * transaction; the reconciler re-enqueues queued jobs under their queue id (`reconcile`), and an attempt
 * is repeatable (its output id is derived from the attempt; an interrupted attempt's staged output was
 * never committed, so no row names it). Returns how many jobs.
 *
 * Its own file so that `obscura backup restore` loads it without the job runner (jobs.ts loads the
 * media pipeline: seconds of start-up).
 */
import type { Tx } from '../db/database.js';

export async function requeueInterrupted(trx: Tx): Promise<number> {
  const r = await trx.updateTable('jobs').set({ status: 'queued', progress: null }).where('status', '=', 'running').executeTakeFirst();
  return Number(r.numUpdatedRows);
}
