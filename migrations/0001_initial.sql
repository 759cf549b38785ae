-- 0001_initial: files, uploads (the FIFO), status history, API call accounting.
-- Times are epoch seconds (REAL). Status values mirror orchestrator/models.py.

CREATE TABLE files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,                 -- the file's name as dropped
    inbox_path TEXT NOT NULL,           -- where it was found
    work_path TEXT NOT NULL,            -- where it was claimed to (atomic rename)
    route TEXT,                         -- route name, NULL for the inbox root
    status TEXT NOT NULL DEFAULT 'received' CHECK (status IN ('received', 'queued', 'reporting', 'complete', 'partial', 'rejected', 'empty', 'duplicate')),
        -- received: claimed, not prepared; queued: uploads enqueued; reporting: writing results;
        -- complete | partial | rejected | empty | duplicate: terminal
    sha256 TEXT,                        -- of the source bytes
    size_bytes INTEGER,
    error TEXT,                         -- one sentence when rejected or partial
    encoding TEXT,                      -- detected source encoding
    format TEXT,                        -- source delimiter: csv, tsv or ssv
    rows_total INTEGER NOT NULL DEFAULT 0,     -- data records in the source
    rows_rejected INTEGER NOT NULL DEFAULT 0,  -- rejected locally by intake
    duplicates INTEGER NOT NULL DEFAULT 0,     -- repeated lookup values inside the file
    info TEXT NOT NULL DEFAULT '{}',    -- JSON: header mapping, duplicate values, paths, ...
    received_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL,
    reported_at REAL                    -- results written and source moved out of work
);
-- One import per content: a second file with the same bytes is a duplicate.
CREATE UNIQUE INDEX files_sha256_imported ON files (sha256)
    WHERE status IN ('queued', 'reporting', 'complete', 'partial');
CREATE INDEX files_status ON files (status, id);

CREATE TABLE uploads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- strict FIFO order; never reused
    file_id INTEGER NOT NULL REFERENCES files (id),
    seq INTEGER NOT NULL,                  -- 1-based position within the file
    path TEXT NOT NULL,                    -- prepared UTF-8 CSV on disk
    size_bytes INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    source_rows BLOB NOT NULL,             -- uint32 source line number per row, in order
    kind TEXT NOT NULL DEFAULT 'leads'
        CHECK (kind IN ('leads', 'program_members', 'custom_objects')),
    options TEXT NOT NULL DEFAULT '{}',    -- JSON: format, lookupField, listId, partitionName, ...
    status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'submitting', 'submitted', 'importing', 'complete', 'failed', 'rejected')),
        -- queued: in our FIFO; submitting: create call under way; submitted: Marketo Queued;
        -- importing: Marketo Importing; complete: Marketo Complete;
        -- failed: Marketo Failed too often (dead letter); rejected: refused at upload (dead letter)
    batch_id INTEGER,                      -- Marketo batchId of the current attempt
    marketo_status TEXT CHECK (marketo_status IN ('Queued', 'Importing', 'Complete', 'Failed')),
    num_leads_processed INTEGER,
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
    UNIQUE (file_id, seq)
);
CREATE INDEX uploads_status ON uploads (status, id);
CREATE INDEX uploads_file ON uploads (file_id, seq);

-- The allowed transitions (orchestrator/models.py FILE_TRANSITIONS, UPLOAD_TRANSITIONS).
CREATE TABLE allowed_transitions (
    entity TEXT NOT NULL CHECK (entity IN ('file', 'upload')),
    from_status TEXT NOT NULL,
    to_status TEXT NOT NULL,
    PRIMARY KEY (entity, from_status, to_status)
) WITHOUT ROWID;
INSERT INTO allowed_transitions (entity, from_status, to_status) VALUES
    ('file', 'received', 'duplicate'),
    ('file', 'received', 'empty'),
    ('file', 'received', 'queued'),
    ('file', 'received', 'rejected'),
    ('file', 'received', 'reporting'),
    ('file', 'queued', 'reporting'),
    ('file', 'reporting', 'complete'),
    ('file', 'reporting', 'partial'),
    ('file', 'reporting', 'rejected'),
    ('file', 'partial', 'queued'),
    ('file', 'rejected', 'queued'),
    ('file', 'rejected', 'received'),
    ('file', 'empty', 'received'),
    ('file', 'duplicate', 'received'),
    ('upload', 'queued', 'submitting'),
    ('upload', 'submitting', 'complete'),
    ('upload', 'submitting', 'failed'),
    ('upload', 'submitting', 'importing'),
    ('upload', 'submitting', 'queued'),
    ('upload', 'submitting', 'rejected'),
    ('upload', 'submitting', 'submitted'),
    ('upload', 'submitted', 'complete'),
    ('upload', 'submitted', 'failed'),
    ('upload', 'submitted', 'importing'),
    ('upload', 'submitted', 'queued'),
    ('upload', 'importing', 'complete'),
    ('upload', 'importing', 'failed'),
    ('upload', 'importing', 'queued'),
    ('upload', 'failed', 'queued'),
    ('upload', 'rejected', 'queued');

-- History written by triggers, so it cannot drift from state.
CREATE TABLE status_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    entity TEXT NOT NULL CHECK (entity IN ('file', 'upload')),
    entity_id INTEGER NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX status_history_entity ON status_history (entity, entity_id, id);

CREATE TRIGGER files_transition_guard BEFORE UPDATE OF status ON files
WHEN OLD.status IS NOT NEW.status AND NOT EXISTS (
    SELECT 1 FROM allowed_transitions
    WHERE entity = 'file' AND from_status = OLD.status AND to_status = NEW.status)
BEGIN
    SELECT RAISE(ABORT, 'transition not allowed');
END;

CREATE TRIGGER uploads_transition_guard BEFORE UPDATE OF status ON uploads
WHEN OLD.status IS NOT NEW.status AND NOT EXISTS (
    SELECT 1 FROM allowed_transitions
    WHERE entity = 'upload' AND from_status = OLD.status AND to_status = NEW.status)
BEGIN
    SELECT RAISE(ABORT, 'transition not allowed');
END;

CREATE TRIGGER files_history_insert AFTER INSERT ON files
BEGIN
    INSERT INTO status_history (entity, entity_id, from_status, to_status, at)
    VALUES ('file', NEW.id, NULL, NEW.status, NEW.updated_at);
END;

CREATE TRIGGER files_history_update AFTER UPDATE OF status ON files
WHEN OLD.status IS NOT NEW.status
BEGIN
    INSERT INTO status_history (entity, entity_id, from_status, to_status, at)
    VALUES ('file', NEW.id, OLD.status, NEW.status, NEW.updated_at);
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

-- API call accounting: calls per Marketo day (America/Chicago) and endpoint, for the budget.
CREATE TABLE api_usage (
    day TEXT NOT NULL,          -- YYYY-MM-DD in America/Chicago
    endpoint TEXT NOT NULL,     -- e.g. import_create, import_status, failures, describe
    calls INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, endpoint)
) WITHOUT ROWID;

-- Recent errors for `leadflow status`.
CREATE TABLE errors (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    file_id INTEGER,
    upload_id INTEGER,
    code TEXT,
    message TEXT NOT NULL
);
