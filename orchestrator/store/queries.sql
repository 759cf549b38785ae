-- Runtime queries of orchestrator/store.py, one per `-- name: NAME` header.
-- `{upload_columns}` stands for store.UPLOAD_COLUMNS. Always parameterised; DDL lives
-- only in migrations/.

-- name: insert_file
INSERT INTO files (name, inbox_path, work_path, route, size_bytes, status, received_at,
                   updated_at)
VALUES (:name, :inbox_path, :work_path, :route, :size_bytes, 'received', :now, :now)
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
WHERE sha256 = :sha256 AND COALESCE(import_key, '') = COALESCE(:import_key, '')
  AND status IN ('queued', 'reporting', 'complete', 'partial')
ORDER BY id LIMIT 1

-- name: insert_upload
INSERT INTO uploads (file_id, seq, path, size_bytes, rows, source_rows, kind, options, status,
                     created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)

-- name: claim_next_upload
UPDATE uploads SET status = 'submitting', claimed_at = :now, updated_at = :now
WHERE id = (
    SELECT id FROM uploads
    WHERE status = 'queued' AND (not_before IS NULL OR not_before <= :now)
    ORDER BY id LIMIT 1)
  AND status = 'queued'
RETURNING {upload_columns}

-- name: select_upload
SELECT {upload_columns} FROM uploads WHERE id = ?

-- name: select_upload_source_rows
SELECT source_rows FROM uploads WHERE id = ?

-- name: select_uploads_of_file
SELECT {upload_columns} FROM uploads WHERE file_id = ? ORDER BY seq

-- name: select_uploads_by_status
SELECT {upload_columns} FROM uploads WHERE status = ? ORDER BY id

-- name: select_at_marketo
SELECT {upload_columns} FROM uploads WHERE status IN ('submitted', 'importing')
ORDER BY submitted_at, id

-- name: select_due_for_poll
SELECT {upload_columns} FROM uploads
WHERE status IN ('submitted', 'importing') AND (next_poll_at IS NULL OR next_poll_at <= ?)
ORDER BY next_poll_at, id LIMIT ?

-- name: select_next_poll_at
SELECT MIN(next_poll_at) FROM uploads WHERE status IN ('submitted', 'importing')

-- name: select_next_queued_at
SELECT MIN(COALESCE(not_before, 0)) FROM uploads WHERE status = 'queued'

-- name: count_uploads_in
SELECT COUNT(*) FROM uploads WHERE status IN ('submitting', 'submitted', 'importing')

-- name: select_files_to_report
SELECT * FROM files
WHERE reported_at IS NULL
  AND status IN ('reporting', 'complete', 'partial', 'rejected', 'empty', 'duplicate')
ORDER BY id

-- name: select_files_ready
SELECT f.* FROM files f
WHERE f.status = 'queued' AND NOT EXISTS (
    SELECT 1 FROM uploads u
    WHERE u.file_id = f.id AND u.status NOT IN ('complete', 'failed', 'rejected'))
ORDER BY f.id

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
INSERT INTO api_usage (day, endpoint, calls, errors) VALUES (?, ?, ?, ?)
ON CONFLICT (day, endpoint) DO UPDATE SET calls = calls + excluded.calls,
                                          errors = errors + excluded.errors

-- name: select_calls_on_day
SELECT COALESCE(SUM(calls), 0) FROM api_usage WHERE day = ?

-- name: select_usage_on_day
SELECT endpoint, calls, errors FROM api_usage WHERE day = ? ORDER BY 1

-- name: insert_api_call
-- A call admitted by the governor, about to be sent (``answered_at`` stays NULL meanwhile).
INSERT INTO api_calls (endpoint, day, sent_at) VALUES (?, ?, ?) RETURNING id

-- name: answer_api_call
UPDATE api_calls SET answered_at = ? WHERE id = ?

-- name: settle_api_calls
-- Calls a dead process left in flight: they count as made, answered now.
UPDATE api_calls SET answered_at = ? WHERE answered_at IS NULL

-- name: forget_api_calls
-- Calls answered before the rate window began no longer count anywhere.
DELETE FROM api_calls WHERE answered_at IS NOT NULL AND answered_at <= ?

-- name: select_api_calls_answered
SELECT answered_at FROM api_calls WHERE answered_at IS NOT NULL ORDER BY answered_at

-- name: insert_error
INSERT INTO errors (at, file_id, upload_id, code, message) VALUES (?, ?, ?, ?, ?)

-- name: select_recent_errors
SELECT at, file_id, upload_id, code, message FROM errors ORDER BY id DESC LIMIT ?

-- name: select_files_for_status
-- ``leadflow status`` files: every open file (capped) and the newest finished ones, with row
-- counts summed over their uploads (each subquery uses the ``uploads_file`` index).
SELECT f.id, f.name, f.status, f.route, f.rows_total, f.rows_rejected, f.error,
    f.received_at, f.finished_at, f.reported_at,
    (SELECT SUM(CASE WHEN u.status = 'complete' THEN COALESCE(u.num_leads_processed, 0)
                     ELSE 0 END) FROM uploads u WHERE u.file_id = f.id) AS rows_imported,
    (SELECT SUM(CASE WHEN u.status = 'complete' THEN COALESCE(u.num_rows_failed, 0)
                     WHEN u.status IN ('failed', 'rejected') THEN u.rows ELSE 0 END)
        FROM uploads u WHERE u.file_id = f.id) AS rows_failed
FROM files f
WHERE f.id IN (
    SELECT id FROM (SELECT id FROM files WHERE status IN ('received', 'queued', 'reporting')
                    ORDER BY id LIMIT ?)
    UNION ALL
    SELECT id FROM (SELECT id FROM files
                    WHERE status NOT IN ('received', 'queued', 'reporting')
                    ORDER BY id DESC LIMIT ?)
)
ORDER BY f.id

-- name: upsert_daemon_routes
INSERT INTO daemon_routes (id, pid, routes, recorded_at) VALUES (1, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, routes = excluded.routes,
                               recorded_at = excluded.recorded_at

-- name: select_daemon_routes
SELECT pid, routes, recorded_at FROM daemon_routes WHERE id = 1

-- name: select_submissions_of_file
-- Every create call of a file's uploads, oldest first (written by 0005's triggers).
SELECT s.upload_id, s.batch_id, s.outcome, s.marketo_status, s.at
FROM upload_submissions s JOIN uploads u ON u.id = s.upload_id
WHERE u.file_id = ?
ORDER BY s.id

-- name: select_files_to_expire
-- Finished files reported at or before :cutoff whose leftover :what (archive, rejected,
-- results, work) has not been dealt with since their last report; never an open file.
SELECT f.* FROM files f
WHERE f.reported_at IS NOT NULL AND f.reported_at <= :cutoff
  AND f.status IN ('complete', 'partial', 'rejected', 'empty', 'duplicate')
  AND (:what IN ('results', 'work')
       OR (:what = 'archive' AND f.status IN ('complete', 'partial'))
       OR (:what = 'rejected' AND f.status IN ('rejected', 'empty', 'duplicate')))
  AND NOT EXISTS (SELECT 1 FROM retention_deletions d
                  WHERE d.file_id = f.id AND d.what = :what AND d.at >= f.reported_at)
ORDER BY f.reported_at, f.id LIMIT :limit

-- name: upsert_retention_deletion
INSERT INTO retention_deletions (file_id, what, path, deleted, at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (file_id, what) DO UPDATE SET path = excluded.path, deleted = excluded.deleted,
                                          at = excluded.at

-- name: select_retention_counts
-- Leftovers retention deleted since a time, by kind.
SELECT what, COUNT(*) FROM retention_deletions WHERE deleted = 1 AND at >= ? GROUP BY what
