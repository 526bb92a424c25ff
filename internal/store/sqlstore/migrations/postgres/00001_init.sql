-- otpd schema, PostgreSQL flavour. Keep it in step with migrations/sqlite/00001_init.sql: the
-- store runs one SQL text on both. Times are BIGINT Unix milliseconds; JSON is TEXT.

-- +goose Up
CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    settings   TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX tenants_name ON tenants (name);

CREATE TABLE applications (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants (id),
    name               TEXT NOT NULL,
    client_id          TEXT NOT NULL DEFAULT '',
    client_secret_hash BYTEA,
    settings           TEXT NOT NULL DEFAULT '{}',
    created_at         BIGINT NOT NULL,
    UNIQUE (tenant_id, id)
);
CREATE UNIQUE INDEX applications_client_id ON applications (client_id) WHERE client_id <> '';

CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    application_id TEXT, -- NULL for tenant admin keys
    role           TEXT NOT NULL,
    secret_hash    BYTEA NOT NULL,
    created_at     BIGINT NOT NULL,
    revoked_at     BIGINT,
    FOREIGN KEY (tenant_id, application_id) REFERENCES applications (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX api_keys_application ON api_keys (tenant_id, application_id);

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    login       TEXT NOT NULL DEFAULT '',
    email       TEXT NOT NULL DEFAULT '',
    phone       TEXT NOT NULL DEFAULT '',
    external_id TEXT NOT NULL DEFAULT '',
    first_name  TEXT NOT NULL DEFAULT '',
    last_name   TEXT NOT NULL DEFAULT '',
    language    TEXT NOT NULL DEFAULT '',
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    role        TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    version     BIGINT NOT NULL,
    UNIQUE (tenant_id, id)
);
-- Empty login / external id means "none" and may repeat.
CREATE UNIQUE INDEX users_login ON users (tenant_id, login) WHERE login <> '';
CREATE UNIQUE INDEX users_external_id ON users (tenant_id, external_id) WHERE external_id <> '';

CREATE TABLE challenges (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    application_id TEXT NOT NULL DEFAULT '',
    channel        TEXT NOT NULL,
    recipient      TEXT NOT NULL,
    purpose        TEXT NOT NULL DEFAULT '',
    code_hash      BYTEA,
    code_length    INTEGER NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'verified', 'failed', 'canceled', 'expired')),
    attempts       INTEGER NOT NULL,
    max_attempts   INTEGER NOT NULL,
    sends          INTEGER NOT NULL,
    max_sends      INTEGER NOT NULL,
    last_sent_at   BIGINT NOT NULL,
    ttl_ms         BIGINT NOT NULL,
    delivery       TEXT NOT NULL DEFAULT '',
    user_id        TEXT NOT NULL DEFAULT '',
    client_ip      TEXT NOT NULL DEFAULT '',
    metadata       TEXT NOT NULL DEFAULT '{}',
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    finished_at    BIGINT,
    version        BIGINT NOT NULL,
    UNIQUE (tenant_id, id)
);
CREATE INDEX challenges_recipient ON challenges (tenant_id, recipient, id);
CREATE INDEX challenges_expiry ON challenges (status, expires_at);
CREATE INDEX challenges_finished ON challenges (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE messages (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL REFERENCES tenants (id),
    challenge_id        TEXT, -- NULL for messages without a challenge (gateway tests)
    channel             TEXT NOT NULL,
    recipient           TEXT NOT NULL,
    body                BYTEA, -- sealed; NULL once final
    provider            TEXT NOT NULL DEFAULT '',
    status              TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'accepted', 'delivered', 'undelivered', 'failed')),
    attempts            INTEGER NOT NULL,
    max_attempts        INTEGER NOT NULL,
    next_attempt_at     BIGINT NOT NULL, -- while sending: equals lease_until
    lease_until         BIGINT,
    lease_owner         TEXT NOT NULL DEFAULT '',
    provider_message_id TEXT NOT NULL DEFAULT '',
    last_error          TEXT NOT NULL DEFAULT '',
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    sent_at             BIGINT,
    FOREIGN KEY (tenant_id, challenge_id) REFERENCES challenges (tenant_id, id) ON DELETE CASCADE
);
-- The claim scan: only rows a worker may still take, in next_attempt_at order.
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE status IN ('queued', 'sending');
CREATE INDEX messages_challenge ON messages (challenge_id);
CREATE INDEX messages_final ON messages (updated_at) WHERE status IN ('sent', 'accepted', 'delivered', 'undelivered', 'failed');

CREATE TABLE message_attempts (
    message_id  TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    provider    TEXT NOT NULL DEFAULT '',
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    outcome     TEXT NOT NULL,
    error       TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (message_id, attempt)
);

CREATE TABLE rate_events (
    tenant_id TEXT NOT NULL,
    scope     TEXT NOT NULL,
    key       TEXT NOT NULL,
    at        BIGINT NOT NULL
);
CREATE INDEX rate_events_key ON rate_events (tenant_id, scope, key, at);
CREATE INDEX rate_events_at ON rate_events (at);

CREATE TABLE idempotency_keys (
    tenant_id   TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint BYTEA,
    resource_id TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

CREATE TABLE dev_messages (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    channel    TEXT NOT NULL,
    recipient  TEXT NOT NULL,
    body       BYTEA,
    created_at BIGINT NOT NULL
);
CREATE INDEX dev_messages_tenant ON dev_messages (tenant_id, created_at);

CREATE TABLE audit_events (
    id        TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL, -- may be '' for events before a tenant is known
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL DEFAULT '',
    action    TEXT NOT NULL,
    target    TEXT NOT NULL DEFAULT '',
    result    TEXT NOT NULL DEFAULT '',
    ip        TEXT NOT NULL DEFAULT '',
    details   TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_tenant ON audit_events (tenant_id, at);

-- +goose Down
DROP TABLE audit_events;
DROP TABLE dev_messages;
DROP TABLE idempotency_keys;
DROP TABLE rate_events;
DROP TABLE message_attempts;
DROP TABLE messages;
DROP TABLE challenges;
DROP TABLE users;
DROP TABLE api_keys;
DROP TABLE applications;
DROP TABLE tenants;
