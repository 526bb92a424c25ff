-- Keys otpd signs its JWTs with (bearer tokens of the vendor surfaces). Deployment-wide; the
-- private key is sealed with the master key.

-- +goose Up
CREATE TABLE signing_keys (
    id          TEXT PRIMARY KEY,
    algorithm   TEXT NOT NULL,
    private_key BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX signing_keys_created ON signing_keys (created_at);

-- +goose Down
DROP TABLE signing_keys;
