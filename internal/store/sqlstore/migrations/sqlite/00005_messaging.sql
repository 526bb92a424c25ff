-- Messaging (BSG 2FA dialect and the SMS-pumping defences): message templates, the per-tenant
-- price table and messaging settings, the index of BSG sessions (country, creation time) for
-- otp_list, daily counters for the per-dial-code caps and the spend cap, and a numeric id for
-- every outbox message (BSG's messages[].id is an integer).

-- +goose Up
CREATE TABLE templates (
    id         INTEGER PRIMARY KEY AUTOINCREMENT, -- BSG's integer template_id, never reused
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    name       TEXT NOT NULL,
    text       TEXT NOT NULL,
    countries  TEXT NOT NULL DEFAULT '', -- ISO 3166 alpha-2 codes, comma-separated; '' = all
    status     TEXT NOT NULL CHECK (status IN ('requested', 'approved', 'rejected', 'deleted')),
    is_default INTEGER NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version    INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX templates_name ON templates (tenant_id, name) WHERE status <> 'deleted';
CREATE UNIQUE INDEX templates_default ON templates (tenant_id) WHERE is_default = 1;
CREATE INDEX templates_tenant ON templates (tenant_id, id);

CREATE TABLE prices (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    channel    TEXT NOT NULL,
    country    TEXT NOT NULL,
    price      TEXT NOT NULL, -- decimal string
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, channel, country)
) STRICT;

CREATE TABLE messaging_settings (
    tenant_id  TEXT NOT NULL PRIMARY KEY REFERENCES tenants (id),
    settings   TEXT NOT NULL DEFAULT '{}',
    updated_at INTEGER NOT NULL,
    version    INTEGER NOT NULL
) STRICT;

CREATE TABLE bsg_sessions (
    tenant_id    TEXT NOT NULL,
    challenge_id TEXT NOT NULL,
    country_code TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, challenge_id),
    FOREIGN KEY (tenant_id, challenge_id) REFERENCES challenges (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX bsg_sessions_created ON bsg_sessions (tenant_id, created_at);

CREATE TABLE messaging_counters (
    tenant_id TEXT NOT NULL,
    scope     TEXT NOT NULL,
    key       TEXT NOT NULL,
    day       INTEGER NOT NULL, -- days since 1970-01-01 UTC
    count     INTEGER NOT NULL,
    amount    INTEGER NOT NULL, -- billionths of the tenant's currency unit
    PRIMARY KEY (tenant_id, scope, key, day)
) STRICT;

-- SQLite cannot add an auto-increment column to a table: a one-row counter and a trigger number
-- new messages; existing ones take their rowid.
ALTER TABLE messages ADD COLUMN num INTEGER;
UPDATE messages SET num = rowid;
CREATE TABLE message_seq (
    id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    n  INTEGER NOT NULL
) STRICT;
INSERT INTO message_seq (id, n) SELECT 1, coalesce(max(rowid), 0) FROM messages;
-- +goose StatementBegin
CREATE TRIGGER messages_num AFTER INSERT ON messages FOR EACH ROW WHEN NEW.num IS NULL
BEGIN
    UPDATE message_seq SET n = n + 1 WHERE id = 1;
    UPDATE messages SET num = (SELECT n FROM message_seq WHERE id = 1) WHERE rowid = NEW.rowid;
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER messages_num;
DROP TABLE message_seq;
ALTER TABLE messages DROP COLUMN num;
DROP TABLE messaging_counters;
DROP TABLE bsg_sessions;
DROP TABLE messaging_settings;
DROP TABLE prices;
DROP TABLE templates;
