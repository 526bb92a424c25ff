-- One-time login tokens (Acronis), IdP login sessions, revoked OAuth access tokens, per-tenant
-- token settings (redirect allow-list, self-service access), the OpenIAM self-service host map,
-- per-application IAM introspection settings (Haventec), and the "one valid OTP per user and
-- purpose" slots. Keep it in step with migrations/postgres/00008_tokens.sql.
--
-- Tokens and session ids are stored only as SHA-256 digests (they are 256-bit random values);
-- the IAM client secret only sealed.

-- +goose Up
CREATE TABLE one_time_tokens (
    hash           BLOB NOT NULL PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    application_id TEXT NOT NULL DEFAULT '',
    purpose        TEXT NOT NULL,
    audit_data     TEXT NOT NULL DEFAULT '{}',
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX one_time_tokens_expiry ON one_time_tokens (expires_at);
CREATE INDEX one_time_tokens_user ON one_time_tokens (tenant_id, user_id);

CREATE TABLE login_sessions (
    hash       BLOB NOT NULL PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX login_sessions_expiry ON login_sessions (expires_at);
CREATE INDEX login_sessions_user ON login_sessions (tenant_id, user_id);

CREATE TABLE revoked_tokens (
    jti        TEXT NOT NULL PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    expires_at INTEGER NOT NULL, -- when the token would have expired anyway: purgeable after
    revoked_at INTEGER NOT NULL
) STRICT;
CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);

CREATE TABLE token_settings (
    tenant_id                TEXT NOT NULL PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    redirect_targets         TEXT NOT NULL DEFAULT '[]', -- JSON array of URL prefixes
    self_service_require_key INTEGER NOT NULL DEFAULT 0 CHECK (self_service_require_key IN (0, 1)),
    updated_at               INTEGER NOT NULL
) STRICT;

CREATE TABLE self_service_hosts (
    host      TEXT NOT NULL PRIMARY KEY, -- lower case, with the port when not the default
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE
) STRICT;
CREATE INDEX self_service_hosts_tenant ON self_service_hosts (tenant_id);

CREATE TABLE application_iam (
    tenant_id         TEXT NOT NULL,
    application_id    TEXT NOT NULL PRIMARY KEY,
    enabled           INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    introspection_url TEXT NOT NULL DEFAULT '',
    client_id         TEXT NOT NULL DEFAULT '',
    client_secret     BLOB, -- sealed; NULL when not set
    role_path         TEXT NOT NULL DEFAULT '',
    allowed_role      TEXT NOT NULL DEFAULT '',
    updated_at        INTEGER NOT NULL,
    FOREIGN KEY (tenant_id, application_id) REFERENCES applications (tenant_id, id) ON DELETE CASCADE
) STRICT;

CREATE TABLE user_otps (
    tenant_id    TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    purpose      TEXT NOT NULL,
    challenge_id TEXT NOT NULL,
    expires_at   INTEGER NOT NULL, -- the slot is free from then on (0: released, the OTP was used)
    PRIMARY KEY (tenant_id, user_id, purpose),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;

-- +goose Down
DROP TABLE user_otps;
DROP TABLE application_iam;
DROP TABLE self_service_hosts;
DROP TABLE token_settings;
DROP TABLE revoked_tokens;
DROP TABLE login_sessions;
DROP TABLE one_time_tokens;
