-- 0005_submissions_retention: every create call of an upload (report.json's `submissions`),
-- and what retention deleted (`leadflow status`; a sweep never looks at a file twice).

-- One row per create call of an upload, written by triggers on `uploads`, so it cannot drift
-- from the upload's own columns.
CREATE TABLE upload_submissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    upload_id INTEGER NOT NULL REFERENCES uploads (id),
    batch_id INTEGER,                   -- Marketo's batchId; NULL when no answer came
    outcome TEXT NOT NULL CHECK (outcome IN ('accepted', 'uncertain')),
        -- accepted: Marketo answered with a batchId;
        -- uncertain: the call was under way when its answer was lost or the daemon stopped:
        --            a job may exist at Marketo, which has no way to list them
    marketo_status TEXT CHECK (marketo_status IN ('Queued', 'Importing', 'Complete', 'Failed')),
        -- the last status Marketo gave for that batchId
    at REAL NOT NULL
);
CREATE INDEX upload_submissions_upload ON upload_submissions (upload_id, id);

-- What the database already knows: the current batch of every upload that has one.
INSERT INTO upload_submissions (upload_id, batch_id, outcome, marketo_status, at)
SELECT id, batch_id, 'accepted', marketo_status, COALESCE(submitted_at, updated_at)
FROM uploads WHERE batch_id IS NOT NULL ORDER BY COALESCE(submitted_at, updated_at), id;

-- Marketo accepted a create call: the scheduler sets batch_id and submitted_at together.
CREATE TRIGGER uploads_submission_accepted AFTER UPDATE OF submitted_at ON uploads
WHEN NEW.submitted_at IS NOT OLD.submitted_at AND NEW.submitted_at IS NOT NULL
    AND NEW.batch_id IS NOT NULL
BEGIN
    INSERT INTO upload_submissions (upload_id, batch_id, outcome, marketo_status, at)
    VALUES (NEW.id, NEW.batch_id, 'accepted', NEW.marketo_status, NEW.submitted_at);
END;

-- A create call's answer was lost (or the daemon stopped during it): `uncertain` goes up.
CREATE TRIGGER uploads_submission_uncertain AFTER UPDATE OF uncertain ON uploads
WHEN NEW.uncertain > OLD.uncertain
BEGIN
    INSERT INTO upload_submissions (upload_id, batch_id, outcome, marketo_status, at)
    VALUES (NEW.id, NULL, 'uncertain', NULL, NEW.updated_at);
END;

-- Marketo said something new about the current batch.
CREATE TRIGGER uploads_submission_status AFTER UPDATE OF marketo_status ON uploads
WHEN NEW.marketo_status IS NOT NULL AND NEW.batch_id IS NOT NULL
    AND NEW.marketo_status IS NOT OLD.marketo_status
BEGIN
    UPDATE upload_submissions SET marketo_status = NEW.marketo_status
    WHERE id = (SELECT MAX(id) FROM upload_submissions
                WHERE upload_id = NEW.id AND batch_id = NEW.batch_id);
END;

-- Retention: one row per file and kind of leftover once the daemon dealt with it.
CREATE TABLE retention_deletions (
    file_id INTEGER NOT NULL REFERENCES files (id),
    what TEXT NOT NULL CHECK (what IN ('archive', 'rejected', 'results', 'work')),
        -- archive / rejected: the source in paths.archive / paths.rejected;
        -- results: the results folder; work: the work folder
    path TEXT NOT NULL,                 -- the file or folder
    deleted INTEGER NOT NULL CHECK (deleted IN (0, 1)),  -- 0: it was already gone
    at REAL NOT NULL,                   -- when; a later report of the file starts over
    PRIMARY KEY (file_id, what)
) WITHOUT ROWID;
CREATE INDEX retention_deletions_at ON retention_deletions (at);
CREATE INDEX files_reported_at ON files (reported_at) WHERE reported_at IS NOT NULL;
