-- 0006_packing: an upload (one Marketo job) carries rows of one or more files (issue 15).
-- A part is one file's range of rows, as intake prepared it; parts wait in the FIFO
-- (upload_id NULL) until the scheduler packs them into an upload. Every existing upload
-- becomes one part of its own; the uploads table is rebuilt without the per-file columns
-- (SQLite's table rebuild: foreign keys are off while it runs and checked before commit).
-- leadflow: rebuilds tables

-- The new uploads table (renamed to "uploads" at the end, which also rewrites the
-- parts.upload_id reference below).
CREATE TABLE uploads_v2 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- strict FIFO order of formed uploads; never reused
    path TEXT NOT NULL,                    -- the file sent: a part's own file, or a pack file
    size_bytes INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    kind TEXT NOT NULL DEFAULT 'leads'
        CHECK (kind IN ('leads', 'program_members', 'custom_objects')),
    options TEXT NOT NULL DEFAULT '{}',    -- JSON: format, lookupField, listId, partitionName, ...
    status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'submitting', 'submitted', 'importing', 'complete', 'failed', 'rejected')),
        -- queued: formed, waiting for room (a retry of a Failed batch, 1016, ...);
        -- submitting: create call under way; submitted: Marketo Queued;
        -- importing: Marketo Importing; complete: Marketo Complete;
        -- failed: Marketo Failed too often (dead letter); rejected: refused at upload (dead letter)
    batch_id INTEGER,                      -- Marketo batchId of the current attempt
    marketo_status TEXT CHECK (marketo_status IN ('Queued', 'Importing', 'Complete', 'Failed')),
    num_leads_processed INTEGER,           -- Marketo's counters of the whole batch
    num_rows_failed INTEGER,
    num_rows_with_warning INTEGER,
    message TEXT,                          -- Marketo's message
    attempts INTEGER NOT NULL DEFAULT 0,   -- create calls Marketo answered (1016 not counted)
    batch_failures INTEGER NOT NULL DEFAULT 0,  -- batches that ended Failed or were forgotten
    uncertain INTEGER NOT NULL DEFAULT 0,  -- create calls whose answer was lost
    not_before REAL,                       -- backoff: not claimed before this time
    next_poll_at REAL,
    polls INTEGER NOT NULL DEFAULT 0,
    error_code TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    claimed_at REAL,
    submitted_at REAL,
    finished_at REAL,
    results_split_at REAL                  -- failures/warnings fetched and split into its parts
);

INSERT INTO uploads_v2 (
    id, path, size_bytes, rows, kind, options, status, batch_id, marketo_status,
    num_leads_processed, num_rows_failed, num_rows_with_warning, message, attempts,
    batch_failures, uncertain, not_before, next_poll_at, polls, error_code, error, created_at,
    updated_at, claimed_at, submitted_at, finished_at, results_split_at)
SELECT
    u.id, u.path, u.size_bytes, u.rows, u.kind, u.options, u.status, u.batch_id,
    u.marketo_status, u.num_leads_processed, u.num_rows_failed, u.num_rows_with_warning,
    u.message, u.attempts, u.batch_failures, u.uncertain, u.not_before, u.next_poll_at, u.polls,
    u.error_code, u.error, u.created_at, u.updated_at, u.claimed_at, u.submitted_at,
    u.finished_at,
    -- A complete upload of a file already reported has nothing left to split.
    CASE WHEN u.status = 'complete'
              AND (SELECT f.reported_at FROM files f WHERE f.id = u.file_id) IS NOT NULL
         THEN COALESCE(u.finished_at, u.updated_at) END
FROM uploads u
ORDER BY u.id;

-- Ids are never reused: carry the sequence over (uploads may have had ids deleted).
INSERT INTO sqlite_sequence (name, seq)
SELECT 'uploads_v2', 0
WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'uploads_v2');
UPDATE sqlite_sequence
SET seq = MAX(seq, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'uploads'), 0))
WHERE name = 'uploads_v2';

CREATE TABLE parts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- FIFO order of waiting parts; never reused
    file_id INTEGER NOT NULL REFERENCES files (id),
    seq INTEGER NOT NULL,                  -- 1-based position within the file
    path TEXT NOT NULL,                    -- prepared UTF-8 CSV (header + these rows)
    size_bytes INTEGER NOT NULL,           -- of that file, header included
    header_bytes INTEGER NOT NULL DEFAULT 0,  -- bytes of its header line (0: unknown, v1)
    rows INTEGER NOT NULL,
    source_rows BLOB NOT NULL,             -- uint32 source line number per row, in order
    kind TEXT NOT NULL DEFAULT 'leads'
        CHECK (kind IN ('leads', 'program_members', 'custom_objects')),
    options TEXT NOT NULL DEFAULT '{}',    -- JSON: the Marketo parameters of its file
    pack_key TEXT,                         -- equal keys may share an upload; NULL: travels alone
    queued_at REAL NOT NULL,
    send_by REAL,                          -- leaves by then at the latest (import.pack_wait_s)
    upload_id INTEGER REFERENCES uploads_v2 (id),  -- NULL: waiting for a pack
    first_row INTEGER,                     -- 0-based index of its first row in the upload
    num_leads_processed INTEGER,           -- its own rows in the batch, set by the results split
    num_rows_failed INTEGER,
    num_rows_with_warning INTEGER,
    UNIQUE (file_id, seq),
    CHECK ((upload_id IS NULL) = (first_row IS NULL))
);

INSERT INTO parts (
    file_id, seq, path, size_bytes, header_bytes, rows, source_rows, kind, options, pack_key,
    queued_at, send_by, upload_id, first_row, num_leads_processed, num_rows_failed,
    num_rows_with_warning)
SELECT
    u.file_id, u.seq, u.path, u.size_bytes, 0, u.rows, u.source_rows, u.kind, u.options, NULL,
    u.created_at, NULL, u.id, 0,
    CASE WHEN u.status = 'complete' THEN u.num_leads_processed END,
    CASE WHEN u.status = 'complete' THEN u.num_rows_failed END,
    CASE WHEN u.status = 'complete' THEN u.num_rows_with_warning END
FROM uploads u
ORDER BY u.id;

DROP TABLE uploads;
ALTER TABLE uploads_v2 RENAME TO uploads;

CREATE INDEX uploads_status ON uploads (status, id);
-- The FIFO head, and the waiting parts of one pack key in order.
CREATE INDEX parts_waiting ON parts (id) WHERE upload_id IS NULL;
CREATE INDEX parts_waiting_key ON parts (pack_key, id) WHERE upload_id IS NULL;
CREATE INDEX parts_upload ON parts (upload_id, first_row);

CREATE TRIGGER uploads_transition_guard BEFORE UPDATE OF status ON uploads
WHEN OLD.status IS NOT NEW.status AND NOT EXISTS (
    SELECT 1 FROM allowed_transitions
    WHERE entity = 'upload' AND from_status = OLD.status AND to_status = NEW.status)
BEGIN
    SELECT RAISE(ABORT, 'transition not allowed');
END;

CREATE TRIGGER uploads_history_insert AFTER INSERT ON uploads
BEGIN
    INSERT INTO status_history (entity, entity_id, from_status, to_status, at)
    VALUES ('upload', NEW.id, NULL, NEW.status, NEW.updated_at);
END;

CREATE TRIGGER uploads_history_update AFTER UPDATE OF status ON uploads
WHEN OLD.status IS NOT NEW.status
BEGIN
    INSERT INTO status_history (entity, entity_id, from_status, to_status, at)
    VALUES ('upload', NEW.id, OLD.status, NEW.status, NEW.updated_at);
END;

-- The create calls of each upload (0005_submissions_retention), unchanged.
CREATE TRIGGER uploads_submission_accepted AFTER UPDATE OF submitted_at ON uploads
WHEN NEW.submitted_at IS NOT OLD.submitted_at AND NEW.submitted_at IS NOT NULL
    AND NEW.batch_id IS NOT NULL
BEGIN
    INSERT INTO upload_submissions (upload_id, batch_id, outcome, marketo_status, at)
    VALUES (NEW.id, NEW.batch_id, 'accepted', NEW.marketo_status, NEW.submitted_at);
END;

CREATE TRIGGER uploads_submission_uncertain AFTER UPDATE OF uncertain ON uploads
WHEN NEW.uncertain > OLD.uncertain
BEGIN
    INSERT INTO upload_submissions (upload_id, batch_id, outcome, marketo_status, at)
    VALUES (NEW.id, NULL, 'uncertain', NULL, NEW.updated_at);
END;

CREATE TRIGGER uploads_submission_status AFTER UPDATE OF marketo_status ON uploads
WHEN NEW.marketo_status IS NOT NULL AND NEW.batch_id IS NOT NULL
    AND NEW.marketo_status IS NOT OLD.marketo_status
BEGIN
    UPDATE upload_submissions SET marketo_status = NEW.marketo_status
    WHERE id = (SELECT MAX(id) FROM upload_submissions
                WHERE upload_id = NEW.id AND batch_id = NEW.batch_id);
END;

-- Duplicates are looked up by bytes (`sha256`) and then import options, for a batch of files
-- at once and for forced files too: the unique index of 0003 is partial (forced = 0) and does
-- not serve a lookup that includes forced files, which then read every queued file.
CREATE INDEX files_sha256 ON files (sha256);
