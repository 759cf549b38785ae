-- 0007_cluster (PostgreSQL twin of ../0007_cluster.sql): several nodes on one database, several Marketo instances in one deployment.
-- Each node says it is alive (nodes); for each Marketo instance one node at a time holds the
-- lease to talk to Marketo (leases). Every file, part, upload and API call belongs to one
-- instance (its name, as in [[instances]] or [marketo] name; rows written before this version
-- belong to 'default', the name of a [marketo] instance that does not set one). Times are
-- epoch seconds of the nodes' clocks (keep them in sync: NTP).

CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,       -- host:pid unless daemon.node_id names it
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL      -- renewed every daemon.lease_s / 3
);

CREATE TABLE leases (
    instance TEXT PRIMARY KEY,      -- the Marketo instance's name
    holder TEXT,                    -- node_id of the holder; NULL: released
    epoch BIGINT NOT NULL DEFAULT 0,  -- +1 at every change of holder (the fencing token)
    acquired_at DOUBLE PRECISION,
    expires_at DOUBLE PRECISION NOT NULL DEFAULT 0  -- the holder must renew before this
);

-- A dropped file in a shared inbox is taken by one node only: the node that inserts its key
-- (path, size, modification time) first claims it; the others leave it alone.
CREATE TABLE inbox_claims (
    inbox_path TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    mtime_ns BIGINT NOT NULL,
    node_id TEXT NOT NULL,
    claimed_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (inbox_path, size_bytes, mtime_ns)
);
CREATE INDEX inbox_claims_at ON inbox_claims (claimed_at);

-- Marketo's describe (the lead fields, or one custom object's) as the lease holder last
-- fetched it: nodes that do not hold the lease prepare files with it instead of calling.
CREATE TABLE field_catalogues (
    instance TEXT NOT NULL,
    name TEXT NOT NULL,             -- 'lead', or a custom object's apiName
    fields TEXT NOT NULL,           -- JSON, as intake's catalogue caches it
    fetched_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (instance, name)
);

ALTER TABLE files ADD COLUMN instance TEXT NOT NULL DEFAULT 'default';
-- The node that claimed a file (NULL: one daemon on SQLite, or before this version): while it
-- is ``received`` only that node prepares it, unless the node stopped beating (then another
-- node adopts it).
ALTER TABLE files ADD COLUMN node_id TEXT;
ALTER TABLE parts ADD COLUMN instance TEXT NOT NULL DEFAULT 'default';
ALTER TABLE uploads ADD COLUMN instance TEXT NOT NULL DEFAULT 'default';
ALTER TABLE api_calls ADD COLUMN instance TEXT NOT NULL DEFAULT 'default';
CREATE INDEX parts_waiting_instance ON parts (instance, id) WHERE upload_id IS NULL;
CREATE INDEX uploads_instance_status ON uploads (instance, status, id);

-- The day's usage is counted per instance (each has its own daily quota).
ALTER TABLE api_usage ADD COLUMN instance TEXT NOT NULL DEFAULT 'default';
ALTER TABLE api_usage DROP CONSTRAINT api_usage_pkey;
ALTER TABLE api_usage ADD PRIMARY KEY (instance, day, endpoint);
