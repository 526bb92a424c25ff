-- Deployment-wide facts that are not a tenant's, such as which master key the data is sealed
-- under (so an instance started with another key refuses to run instead of failing every check).

-- +goose Up
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- +goose Down
DROP TABLE meta;
