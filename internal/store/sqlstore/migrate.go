package sqlstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// One migration set per engine, kept in step by hand: migrations/sqlite and migrations/postgres.
//
//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrationFiles embed.FS

// provider builds the goose provider for this store's engine. On PostgreSQL it takes a
// session-level advisory lock, so instances starting together migrate one after the other; on
// SQLite the single write connection and IMMEDIATE transactions serialise the migrations of one
// process.
func (s *Store) provider() (*goose.Provider, error) {
	files, err := fs.Sub(migrationFiles, path.Join("migrations", s.dialect))
	if err != nil {
		return nil, err
	}
	opts := []goose.ProviderOption{
		goose.WithLogger(goose.NopLogger()),
		goose.WithDisableGlobalRegistry(true),
	}
	dialect := goose.DialectSQLite3
	if s.dialect == DialectPostgres {
		dialect = goose.DialectPostgres
		// Retry every second for up to ten minutes while another instance migrates.
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 600))
		if err != nil {
			return nil, err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	return goose.NewProvider(dialect, s.w.db, files, opts...)
}

// Migrate applies the pending migrations of this store's engine.
func (s *Store) Migrate(ctx context.Context) error {
	p, err := s.provider()
	if err != nil {
		return fmt.Errorf("sqlstore: migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("sqlstore: migrate: %w", err)
	}
	s.warm(ctx)
	return nil
}

// MigrationState is one migration as `otpd migrate --status` shows it.
type MigrationState struct {
	Version   int64
	Name      string    // file name, e.g. 00001_init.sql
	Applied   bool      // false: pending
	AppliedAt time.Time // zero while pending
}

// String is "00001_init.sql  applied 2026-11-02T10:00:00Z" or "… pending".
func (m MigrationState) String() string {
	if !m.Applied {
		return fmt.Sprintf("%-32s pending", m.Name)
	}
	return fmt.Sprintf("%-32s applied %s", m.Name, m.AppliedAt.UTC().Format(time.RFC3339))
}

// MigrationStatus lists every known migration, oldest first, and whether it is applied.
func (s *Store) MigrationStatus(ctx context.Context) ([]MigrationState, error) {
	p, err := s.provider()
	if err != nil {
		return nil, fmt.Errorf("sqlstore: migration status: %w", err)
	}
	st, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: migration status: %w", err)
	}
	out := make([]MigrationState, 0, len(st))
	for _, m := range st {
		ms := MigrationState{
			Version: m.Source.Version,
			Name:    path.Base(m.Source.Path),
			Applied: m.State == goose.StateApplied,
		}
		if ms.Applied {
			ms.AppliedAt = m.AppliedAt.UTC()
		}
		out = append(out, ms)
	}
	return out, nil
}
