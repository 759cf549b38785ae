-- Runtime queries of the PostgreSQL store: the twin of queries.sql (same names, same
-- results), run by orchestrator/store/core.py. Placeholders are SQLite's (`?`, `:name`);
-- the PostgreSQL engine translates them. No `::` casts (use CAST) and no `%`.
-- `{upload_columns}` stands for core.UPLOAD_COLUMNS, `{part_columns}` for core.PART_COLUMNS.

-- name: insert_file
INSERT INTO files (name, inbox_path, work_path, route, size_bytes, status, received_at,
                   updated_at, instance, node_id)
VALUES (:name, :inbox_path, :work_path, :route, :size_bytes, 'received', :now, :now, :instance,
        :node_id)
RETURNING *

-- name: select_file
SELECT * FROM files WHERE id = ?

-- name: set_file_work_path
UPDATE files SET work_path = ? WHERE id = ? RETURNING *

-- name: select_files_by_status
SELECT * FROM files WHERE status = ? ORDER BY id

-- name: select_file_by_work_path
SELECT * FROM files WHERE work_path = ?

-- name: select_imported_twin
-- The first file with these bytes and import options that is imported or being imported
-- (forced ones included); uses the ``files_import_imported`` index's columns.
SELECT * FROM files
WHERE sha256 = CAST(:sha256 AS text)
  AND COALESCE(import_key, '') = COALESCE(CAST(:import_key AS text), '')
  AND status IN ('queued', 'reporting', 'complete', 'partial')
ORDER BY id LIMIT 1

-- name: insert_files_with_ids
-- A batch of claimed files in one transaction; ids are given by the caller (reserve_ids,
-- inside BEGIN IMMEDIATE) so that each work path can name its file's id.
INSERT INTO files (id, name, inbox_path, work_path, route, size_bytes, status, received_at,
                   updated_at, instance, node_id)
VALUES (:id, :name, :inbox_path, :work_path, :route, :size_bytes, 'received', :now, :now,
        :instance, :node_id)

-- name: adopt_received
-- Files left ``received`` by this node's earlier run (:own = 1, at start), by a daemon
-- without a node name, or by a node that stopped beating before :stale_before: they become
-- this node's to prepare.
UPDATE files SET node_id = :me
WHERE status = 'received'
  AND (node_id IS NULL OR (node_id = :me AND :own = 1) OR (node_id <> :me AND NOT EXISTS (
      SELECT 1 FROM nodes n WHERE n.node_id = files.node_id
                                AND n.heartbeat_at > :stale_before)))
RETURNING *

-- name: reserve_ids
-- The next :n ids of a table (:tbl) from its identity sequence; other nodes may take ids
-- in between, never the same.
SELECT id FROM (
    SELECT nextval(pg_get_serial_sequence(CAST(:tbl AS text), 'id')) AS id
    FROM generate_series(1, CAST(:n AS integer))) AS reserved
ORDER BY id

-- name: select_files_from
-- Files of a batch just added: ids from :first to :last (others' ids in that range are
-- filtered out by the caller).
SELECT * FROM files WHERE id >= :first AND id <= :last ORDER BY id

-- name: enqueue_file
-- Intake's batched ``received -> queued|reporting`` (the guard trigger checks the pair).
UPDATE files SET status = :status, updated_at = :now, sha256 = :sha256, encoding = :encoding,
    format = :format, rows_total = :rows_total, rows_rejected = :rows_rejected,
    duplicates = :duplicates, info = :info, import_key = :import_key, forced = :forced
WHERE id = :id AND status = 'received'

-- name: select_imported_twins
-- For a batch: the first file imported or being imported (forced ones included) with each of
-- the given bytes and import options (``:keys`` is a JSON array of ``[sha256, import_key]``).
SELECT * FROM files
WHERE id IN (
    SELECT MIN(f.id) FROM files f JOIN json_array_elements(CAST(:keys AS json)) AS k(value)
        ON f.sha256 = k.value ->> 0
       AND COALESCE(f.import_key, '') = COALESCE(k.value ->> 1, '')
    WHERE f.status IN ('queued', 'reporting', 'complete', 'partial')
    GROUP BY f.sha256, COALESCE(f.import_key, ''))

-- name: insert_part
-- The id comes from reserve_ids, so a batch knows its part ids without reading them back.
INSERT INTO parts (id, file_id, seq, path, size_bytes, header_bytes, rows, source_rows, kind,
                   options, pack_key, queued_at, send_by, instance)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

-- name: select_file_instances
-- The instance of each of several files (``:ids`` is a JSON array).
SELECT id, instance FROM files WHERE id IN (SELECT CAST(json_array_elements_text(CAST(:ids AS json)) AS bigint))

-- name: insert_upload
INSERT INTO uploads (path, size_bytes, rows, kind, options, status, claimed_at, created_at,
                     updated_at, instance)
VALUES (:path, :size_bytes, :rows, :kind, :options, :status, :claimed_at, :now, :now,
        :instance)
RETURNING {upload_columns}

-- name: link_part
UPDATE parts SET upload_id = ?, first_row = ? WHERE id = ? AND upload_id IS NULL

-- name: select_part_source_rows
SELECT source_rows FROM parts WHERE id = ?

-- name: select_parts_of_upload
SELECT {part_columns} FROM parts WHERE upload_id = ? ORDER BY first_row

-- name: select_parts_of_file
SELECT {part_columns} FROM parts WHERE file_id = ? ORDER BY seq

-- name: select_uploads_of_file
-- The uploads a file's parts ride in, each once, in the order of the file's parts.
SELECT {upload_columns} FROM uploads
JOIN (SELECT upload_id, MIN(seq) AS first_seq FROM parts
      WHERE file_id = ? AND upload_id IS NOT NULL GROUP BY upload_id) AS mine
  ON mine.upload_id = uploads.id
ORDER BY mine.first_seq

-- name: select_parts_of_files
-- The parts of several files (``:ids`` is a JSON array), by file and seq.
SELECT {part_columns} FROM parts
WHERE file_id IN (SELECT CAST(json_array_elements_text(CAST(:ids AS json)) AS bigint)) ORDER BY file_id, seq

-- name: select_files_of_upload
-- Who rides in an upload, for log lines: file id, name and the part's seq, in row order.
SELECT p.file_id, f.name, p.seq, p.rows FROM parts p JOIN files f ON f.id = p.file_id
WHERE p.upload_id = ? ORDER BY p.first_row

-- name: count_files_in_upload
SELECT COUNT(DISTINCT file_id) FROM parts WHERE upload_id = ?

-- name: select_source_rows_of_upload
SELECT id, source_rows FROM parts WHERE upload_id = ?

-- name: select_waiting_head
-- The FIFO head: the oldest part waiting for a pack.
SELECT {part_columns} FROM parts WHERE upload_id IS NULL AND instance = :instance
ORDER BY id LIMIT 1

-- name: select_waiting_group
-- The waiting parts of one pack key in FIFO order, as far as their rows could fit in one
-- upload of ``budget`` bytes of rows, plus the first that would not.
SELECT id, rows, size_bytes, header_bytes, send_by FROM (
    SELECT id, rows, size_bytes, header_bytes, send_by,
        SUM(size_bytes - header_bytes) OVER (ORDER BY id) AS upto
    FROM parts WHERE upload_id IS NULL AND instance = :instance AND pack_key = :key) AS waiting
WHERE upto - (size_bytes - header_bytes) <= :budget
ORDER BY id

-- name: select_waiting_upto
-- The first waiting parts of a key, up to and including one id (a pack the planner chose).
SELECT {part_columns} FROM parts
WHERE upload_id IS NULL AND instance = :instance AND pack_key = :key AND id <= :last
ORDER BY id

-- name: select_waiting_group_totals
SELECT COUNT(*), CAST(COALESCE(SUM(rows), 0) AS bigint), MIN(send_by) FROM parts
WHERE upload_id IS NULL AND instance = :instance AND pack_key = :key

-- name: select_waiting_summary
SELECT COUNT(DISTINCT file_id), COUNT(*), CAST(COALESCE(SUM(rows), 0) AS bigint),
    MIN(queued_at) FROM parts
WHERE upload_id IS NULL AND instance = :instance

-- name: detach_part
-- ``leadflow retry``: a part leaves its dead upload and waits for a new pack.
UPDATE parts SET upload_id = NULL, first_row = NULL, num_leads_processed = NULL,
    num_rows_failed = NULL, num_rows_with_warning = NULL, options = :options,
    pack_key = :pack_key, queued_at = :now, send_by = :now
WHERE id = :id AND upload_id = :upload_id

-- name: select_uploads_to_split
SELECT {upload_columns} FROM uploads
WHERE status = 'complete' AND results_split_at IS NULL AND instance = :instance ORDER BY id

-- name: set_part_counts
UPDATE parts SET num_leads_processed = ?, num_rows_failed = ?, num_rows_with_warning = ?
WHERE id = ? AND upload_id = ?

-- name: set_upload_split
UPDATE uploads SET results_split_at = :now
WHERE id = :id AND status = 'complete' AND results_split_at IS NULL

-- name: count_unreported_in_upload
SELECT COUNT(*) FROM parts p JOIN files f ON f.id = p.file_id
WHERE p.upload_id = ? AND f.reported_at IS NULL

-- name: select_upload_paths
SELECT path FROM uploads

-- name: select_upload_by_path
SELECT {upload_columns} FROM uploads WHERE path = ? ORDER BY id DESC LIMIT 1

-- name: claim_next_upload
-- SKIP LOCKED: two claimers at once each get a different upload (or none).
UPDATE uploads SET status = 'submitting', claimed_at = :now, updated_at = :now
WHERE id = (
    SELECT id FROM uploads
    WHERE status = 'queued' AND instance = :instance
      AND (not_before IS NULL OR not_before <= :now)
    ORDER BY id LIMIT 1
    FOR UPDATE SKIP LOCKED)
  AND status = 'queued'
RETURNING {upload_columns}

-- name: select_upload
SELECT {upload_columns} FROM uploads WHERE id = ?

-- name: select_uploads_by_status
SELECT {upload_columns} FROM uploads WHERE status = :status AND instance = :instance
ORDER BY id

-- name: select_at_marketo
SELECT {upload_columns} FROM uploads
WHERE status IN ('submitted', 'importing') AND instance = :instance
ORDER BY submitted_at, id

-- name: select_due_for_poll
SELECT {upload_columns} FROM uploads
WHERE status IN ('submitted', 'importing') AND instance = :instance
  AND (next_poll_at IS NULL OR next_poll_at <= :now)
ORDER BY next_poll_at, id LIMIT :limit

-- name: select_next_poll_at
SELECT MIN(next_poll_at) FROM uploads
WHERE status IN ('submitted', 'importing') AND instance = :instance

-- name: select_next_queued_at
SELECT MIN(COALESCE(not_before, 0)) FROM uploads WHERE status = 'queued' AND instance = :instance

-- name: count_uploads_in
SELECT COUNT(*) FROM uploads
WHERE status IN ('submitting', 'submitted', 'importing') AND instance = :instance

-- name: select_files_to_report
SELECT * FROM files
WHERE reported_at IS NULL AND instance = :instance
  AND status IN ('reporting', 'complete', 'partial', 'rejected', 'empty', 'duplicate')
ORDER BY id

-- name: select_files_ready
-- Queued files whose every part rides in a terminal upload whose results, when it is
-- complete, were split into its parts.
SELECT f.* FROM files f
WHERE f.status = 'queued' AND f.instance = :instance AND NOT EXISTS (
    SELECT 1 FROM parts p LEFT JOIN uploads u ON u.id = p.upload_id
    WHERE p.file_id = f.id AND (u.id IS NULL
        OR u.status NOT IN ('complete', 'failed', 'rejected')
        OR (u.status = 'complete' AND u.results_split_at IS NULL)))
ORDER BY f.id

-- name: start_reporting
-- Ready files go ``queued -> reporting`` together (the guard trigger checks each pair).
UPDATE files SET status = 'reporting', updated_at = :now
WHERE id IN (SELECT CAST(json_array_elements_text(CAST(:ids AS json)) AS bigint)) AND status = 'queued'
RETURNING *

-- name: count_files_by_status
SELECT status, COUNT(*) FROM files GROUP BY status

-- name: count_uploads_by_status
SELECT status, COUNT(*) FROM uploads GROUP BY status

-- name: select_status_of_files
SELECT status FROM files WHERE id = ?

-- name: select_status_of_uploads
SELECT status FROM uploads WHERE id = ?

-- name: select_history
SELECT from_status, to_status, at FROM status_history WHERE entity = ? AND entity_id = ?
ORDER BY id

-- name: upsert_usage
INSERT INTO api_usage (instance, day, endpoint, calls, errors) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (instance, day, endpoint) DO UPDATE SET calls = api_usage.calls + excluded.calls,
                                                    errors = api_usage.errors + excluded.errors

-- name: select_calls_on_day
SELECT CAST(COALESCE(SUM(calls), 0) AS bigint) FROM api_usage WHERE instance = ? AND day = ?

-- name: select_usage_on_day
SELECT endpoint, calls, errors FROM api_usage WHERE instance = ? AND day = ? ORDER BY 1

-- name: insert_api_call
-- A call admitted by the governor, about to be sent (``answered_at`` stays NULL meanwhile).
INSERT INTO api_calls (instance, endpoint, day, sent_at) VALUES (?, ?, ?, ?) RETURNING id

-- name: answer_api_call
UPDATE api_calls SET answered_at = ? WHERE id = ?

-- name: settle_api_calls
-- Calls a dead process left in flight: they count as made, answered now.
UPDATE api_calls SET answered_at = ? WHERE instance = ? AND answered_at IS NULL

-- name: forget_api_calls
-- Calls answered before the rate window began no longer count anywhere.
DELETE FROM api_calls WHERE instance = ? AND answered_at IS NOT NULL AND answered_at <= ?

-- name: select_api_calls_answered
SELECT answered_at FROM api_calls WHERE instance = ? AND answered_at IS NOT NULL
ORDER BY answered_at

-- name: insert_error
INSERT INTO errors (at, file_id, upload_id, code, message) VALUES (?, ?, ?, ?, ?)

-- name: select_recent_errors
SELECT at, file_id, upload_id, code, message FROM errors ORDER BY id DESC LIMIT ?

-- name: select_files_for_status
-- ``leadflow status`` files: every open file (capped) and the newest finished ones, with row
-- counts summed over their parts (each subquery uses the ``parts`` (file_id, seq) index).
SELECT f.id, f.name, f.status, f.route, f.rows_total, f.rows_rejected, f.error,
    f.received_at, f.finished_at, f.reported_at, f.instance,
    (SELECT CAST(SUM(CASE WHEN u.status = 'complete' THEN COALESCE(p.num_leads_processed, 0)
                          ELSE 0 END) AS bigint)
        FROM parts p JOIN uploads u ON u.id = p.upload_id WHERE p.file_id = f.id)
        AS rows_imported,
    (SELECT CAST(SUM(CASE WHEN u.status = 'complete' THEN COALESCE(p.num_rows_failed, 0)
                          WHEN u.status IN ('failed', 'rejected') THEN p.rows ELSE 0 END)
                 AS bigint)
        FROM parts p JOIN uploads u ON u.id = p.upload_id WHERE p.file_id = f.id)
        AS rows_failed,
    (SELECT COUNT(*) FROM parts p WHERE p.file_id = f.id AND p.upload_id IS NULL)
        AS parts_waiting
FROM files f
WHERE f.id IN (
    SELECT id FROM (SELECT id FROM files WHERE status IN ('received', 'queued', 'reporting')
                    ORDER BY id LIMIT ?) AS open_files
    UNION ALL
    SELECT id FROM (SELECT id FROM files
                    WHERE status NOT IN ('received', 'queued', 'reporting')
                    ORDER BY id DESC LIMIT ?) AS finished_files
)
ORDER BY f.id

-- name: upsert_daemon_routes
INSERT INTO daemon_routes (id, pid, routes, recorded_at) VALUES (1, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, routes = excluded.routes,
                               recorded_at = excluded.recorded_at

-- name: select_daemon_routes
SELECT pid, routes, recorded_at FROM daemon_routes WHERE id = 1

-- name: select_submissions_of_file
-- Every create call of the uploads a file's parts ride in, oldest first (written by 0005's
-- triggers).
SELECT s.upload_id, s.batch_id, s.outcome, s.marketo_status, s.at
FROM upload_submissions s
WHERE s.upload_id IN (SELECT p.upload_id FROM parts p WHERE p.file_id = ?)
ORDER BY s.id

-- name: select_files_to_expire
-- Finished files reported at or before :cutoff whose leftover :what (archive, rejected,
-- results, work) has not been dealt with since their last report; never an open file.
SELECT f.* FROM files f
WHERE f.reported_at IS NOT NULL AND f.reported_at <= :cutoff
  AND f.status IN ('complete', 'partial', 'rejected', 'empty', 'duplicate')
  AND (CAST(:what AS text) IN ('results', 'work')
       OR (CAST(:what AS text) = 'archive' AND f.status IN ('complete', 'partial'))
       OR (CAST(:what AS text) = 'rejected' AND f.status IN ('rejected', 'empty', 'duplicate')))
  AND NOT EXISTS (SELECT 1 FROM retention_deletions d
                  WHERE d.file_id = f.id AND d.what = CAST(:what AS text)
                    AND d.at >= f.reported_at)
ORDER BY f.reported_at, f.id LIMIT :limit

-- name: upsert_retention_deletion
INSERT INTO retention_deletions (file_id, what, path, deleted, at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (file_id, what) DO UPDATE SET path = excluded.path, deleted = excluded.deleted,
                                          at = excluded.at

-- name: select_retention_counts
-- Leftovers retention deleted since a time, by kind.
SELECT what, COUNT(*) FROM retention_deletions WHERE deleted = 1 AND at >= ? GROUP BY what
-- name: upsert_node
INSERT INTO nodes (node_id, host, pid, started_at, heartbeat_at)
VALUES (:node_id, :host, :pid, :now, :now)
ON CONFLICT (node_id) DO UPDATE SET host = excluded.host, pid = excluded.pid,
                                    heartbeat_at = excluded.heartbeat_at

-- name: select_nodes
SELECT node_id, host, pid, started_at, heartbeat_at FROM nodes ORDER BY node_id

-- name: delete_node
DELETE FROM nodes WHERE node_id = ?

-- name: insert_lease
-- The instance's row, once (unheld, expired).
INSERT INTO leases (instance, holder, epoch, acquired_at, expires_at)
VALUES (?, NULL, 0, NULL, 0)
ON CONFLICT (instance) DO NOTHING

-- name: acquire_lease
-- Take the lease when it is free or expired (a new epoch), or renew it when we hold it
-- (same epoch). One statement: two nodes racing cannot both win.
UPDATE leases SET
    epoch = CASE WHEN holder = :node_id AND expires_at > :now THEN epoch ELSE epoch + 1 END,
    acquired_at = CASE WHEN holder = :node_id AND expires_at > :now THEN acquired_at
                       ELSE :now END,
    holder = :node_id,
    expires_at = :now + :lease_s
WHERE instance = :instance AND (holder IS NULL OR holder = :node_id OR expires_at <= :now)
RETURNING epoch

-- name: renew_lease
-- Only the holder of this epoch renews, and only before it expired.
UPDATE leases SET expires_at = :now + :lease_s
WHERE instance = :instance AND holder = :node_id AND epoch = :epoch AND expires_at > :now

-- name: release_lease
UPDATE leases SET holder = NULL, expires_at = 0
WHERE instance = :instance AND holder = :node_id AND epoch = :epoch

-- name: select_leases
SELECT instance, holder, epoch, acquired_at, expires_at FROM leases ORDER BY instance

-- name: claim_inbox_entry
-- One row changed: this node claimed the dropped file; none: another node did. A claim
-- older than :stale_s whose file is still in the inbox (its node died between the claim and
-- the move into work) is taken over.
INSERT INTO inbox_claims (inbox_path, size_bytes, mtime_ns, node_id, claimed_at)
VALUES (:path, :size, :mtime_ns, :node_id, :now)
ON CONFLICT (inbox_path, size_bytes, mtime_ns) DO UPDATE
    SET node_id = excluded.node_id, claimed_at = excluded.claimed_at
    WHERE inbox_claims.claimed_at <= excluded.claimed_at - :stale_s

-- name: forget_inbox_claims
-- Claims older than a cutoff: their files left the inbox long ago.
DELETE FROM inbox_claims WHERE claimed_at < ?

-- name: upsert_catalogue
INSERT INTO field_catalogues (instance, name, fields, fetched_at) VALUES (?, ?, ?, ?)
ON CONFLICT (instance, name) DO UPDATE SET fields = excluded.fields,
                                           fetched_at = excluded.fetched_at

-- name: select_catalogue
SELECT fields, fetched_at FROM field_catalogues WHERE instance = ? AND name = ?
