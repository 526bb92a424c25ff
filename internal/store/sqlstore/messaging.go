package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/otpd/otpd/internal/store"
)

// Messaging: templates, prices, tenant messaging settings, the BSG session index, numbered
// messages and daily counters (migrations 00005_messaging).

const templateCols = `id, tenant_id, name, text, countries, status, is_default, created_at, updated_at, version`

var (
	sqlInsertTemplate = def(`INSERT INTO templates (tenant_id, name, text, countries, status, is_default,
		created_at, updated_at, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id`)
	sqlGetTemplate        = def(`SELECT ` + templateCols + ` FROM templates WHERE tenant_id = $1 AND id = $2`)
	sqlGetDefaultTemplate = def(`SELECT ` + templateCols + ` FROM templates WHERE tenant_id = $1 AND is_default = $2`)
	sqlUpdateTemplate     = def(`UPDATE templates SET name = $3, text = $4, countries = $5, status = $6,
		updated_at = $7, version = version + 1 WHERE tenant_id = $1 AND id = $2 AND version = $8`)
	sqlTemplateExists = def(`SELECT 1 FROM templates WHERE tenant_id = $1 AND id = $2`)
	sqlCountTemplates = def(`SELECT count(*) FROM templates WHERE tenant_id = $1 AND status = $2`)

	sqlPutPrice = def(`INSERT INTO prices (tenant_id, channel, country, price, updated_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (tenant_id, channel, country) DO UPDATE SET price = excluded.price, updated_at = excluded.updated_at`)
	sqlDeletePrice = def(`DELETE FROM prices WHERE tenant_id = $1 AND channel = $2 AND country = $3`)
	sqlGetPrice    = def(`SELECT tenant_id, channel, country, price, updated_at FROM prices
		WHERE tenant_id = $1 AND channel = $2 AND country = $3`)
	sqlListPrices = def(`SELECT tenant_id, channel, country, price, updated_at FROM prices
		WHERE tenant_id = $1 ORDER BY channel, country`)

	sqlGetMessagingSettings = def(`SELECT tenant_id, settings, updated_at, version FROM messaging_settings
		WHERE tenant_id = $1`)
	sqlInsertMessagingSettings = def(`INSERT INTO messaging_settings (tenant_id, settings, updated_at, version)
		VALUES ($1, $2, $3, 1) ON CONFLICT (tenant_id) DO NOTHING`)
	sqlUpdateMessagingSettings = def(`UPDATE messaging_settings SET settings = $2, updated_at = $3,
		version = version + 1 WHERE tenant_id = $1 AND version = $4`)

	sqlInsertMessagingSession = def(`INSERT INTO bsg_sessions (tenant_id, challenge_id, country_code, created_at)
		VALUES ($1, $2, $3, $4)`)
	sqlGetMessagingSession = def(`SELECT tenant_id, challenge_id, country_code, created_at FROM bsg_sessions
		WHERE tenant_id = $1 AND challenge_id = $2`)

	sqlPendingLock  = def(`SELECT pg_advisory_xact_lock($1)`)
	sqlCountPending = def(`SELECT count(*) FROM challenges WHERE tenant_id = $1 AND recipient = $2
		AND application_id = $3 AND status = 'pending' AND expires_at > $4`)
	// SQLite without statistics would walk challenges_expiry — every pending session of every
	// tenant — instead of the recipient's few rows; the unary plus keeps those terms off indexes.
	sqlCountPendingSQLite = def(`SELECT count(*) FROM challenges WHERE tenant_id = $1 AND recipient = $2
		AND application_id = $3 AND +status = 'pending' AND +expires_at > $4`)

	// One statement decides: a new day's row is inserted only when the addition alone fits the
	// caps (the caller checks that first); an existing row grows only when the sum still fits.
	// No row returned means "refused".
	sqlAddDailyCount = def(`INSERT INTO messaging_counters (tenant_id, scope, key, day, count, amount)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (tenant_id, scope, key, day) DO UPDATE
			SET count = messaging_counters.count + excluded.count,
				amount = messaging_counters.amount + excluded.amount
			WHERE (CAST($7 AS BIGINT) = 0 OR messaging_counters.count + excluded.count <= CAST($7 AS BIGINT))
				AND (CAST($8 AS BIGINT) = 0 OR messaging_counters.amount + excluded.amount <= CAST($8 AS BIGINT))
		RETURNING count`)
	sqlDeleteOldCounters = def(`DELETE FROM messaging_counters WHERE tenant_id = $1 AND scope = $2
		AND key = $3 AND day < $4`)
)

func scanTemplate(sc scanner) (*store.Template, error) {
	var t store.Template
	var countries string
	var created, updated int64
	err := sc.Scan(&t.ID, &t.TenantID, &t.Name, &t.Text, &countries, &t.Status, &t.Default,
		&created, &updated, &t.Version)
	if err != nil {
		return nil, err
	}
	if countries != "" {
		t.Countries = strings.Split(countries, ",")
	}
	t.CreatedAt = fromMs(created)
	t.UpdatedAt = fromMs(updated)
	return &t, nil
}

// CreateTemplate inserts t, setting t.ID from the sequence and t.Version to 1.
func (q *queries) CreateTemplate(ctx context.Context, t *store.Template) error {
	t.CreatedAt = truncMs(t.CreatedAt)
	t.UpdatedAt = truncMs(t.UpdatedAt)
	t.Version = 1
	err := q.queryRow(ctx, true, sqlInsertTemplate, t.TenantID, t.Name, t.Text, strings.Join(t.Countries, ","),
		t.Status, t.Default, ms(t.CreatedAt), ms(t.UpdatedAt), t.Version).Scan(&t.ID)
	return wrap(err, "create template")
}

func (q *queries) GetTemplate(ctx context.Context, tenantID string, id int64) (*store.Template, error) {
	t, err := scanTemplate(q.queryRow(ctx, false, sqlGetTemplate, tenantID, id))
	return t, wrap(err, "get template")
}

func (q *queries) GetDefaultTemplate(ctx context.Context, tenantID string) (*store.Template, error) {
	t, err := scanTemplate(q.queryRow(ctx, false, sqlGetDefaultTemplate, tenantID, true))
	return t, wrap(err, "get default template")
}

// UpdateTemplate writes the mutable fields if the version still matches, and bumps t.Version.
func (q *queries) UpdateTemplate(ctx context.Context, t *store.Template) error {
	t.UpdatedAt = truncMs(t.UpdatedAt)
	n, err := affected(q.exec(ctx, sqlUpdateTemplate, t.TenantID, t.ID, t.Name, t.Text,
		strings.Join(t.Countries, ","), t.Status, ms(t.UpdatedAt), t.Version))
	if err != nil {
		return wrap(err, "update template")
	}
	if n == 0 {
		return q.whyNotUpdated(ctx, sqlTemplateExists, "update template", t.TenantID, t.ID)
	}
	t.Version++
	return nil
}

// templateSort maps a sort key to its column; only these fixed texts reach the SQL.
var templateSort = map[string]string{
	"": "id", "template_id": "id", "status": "status", "name": "name", "updated_at": "updated_at",
}

// ListTemplates returns one page of the tenant's templates matching f, and the number matching.
func (q *queries) ListTemplates(ctx context.Context, tenantID string, f store.TemplateFilter) ([]store.Template, int, error) {
	col, ok := templateSort[f.Sort]
	if !ok {
		return nil, 0, fmt.Errorf("sqlstore: list templates: unknown sort %q", f.Sort)
	}
	var where strings.Builder
	args := []any{tenantID}
	where.WriteString(` WHERE tenant_id = $1`)
	if f.Status != "" {
		args = append(args, f.Status)
		fmt.Fprintf(&where, " AND status = $%d", len(args))
	}
	if len(f.IDs) > 0 {
		fmt.Fprintf(&where, " AND id IN (%s)", placeholders(len(args)+1, len(f.IDs)))
		for _, id := range f.IDs {
			args = append(args, id)
		}
	}
	if !storableText(args) { // no row holds such text, and every filter here must match
		return nil, 0, nil
	}
	var total int
	if err := q.queryRow(ctx, false, `SELECT count(*) FROM templates`+where.String(), args...).Scan(&total); err != nil {
		return nil, 0, wrap(err, "count templates")
	}
	dir := " ASC"
	if f.Desc {
		dir = " DESC"
	}
	order := col + q.collate(col == "name" || col == "status") + dir
	if col != "id" {
		order += ", id" + dir
	}
	args = append(args, limit(f.Limit, 10, 500), max(f.Offset, 0))
	text := fmt.Sprintf(`SELECT %s FROM templates%s ORDER BY %s LIMIT $%d OFFSET $%d`,
		templateCols, where.String(), order, len(args)-1, len(args))
	rows, err := q.query(ctx, false, text, args...)
	ts, err := scanAll(rows, err, scanTemplate)
	return ts, total, wrap(err, "list templates")
}

// collate makes text ordering byte-wise on PostgreSQL, as it is on SQLite, so both backends
// sort alike whatever the database's locale.
func (q *queries) collate(text bool) string {
	if text && q.s.dialect == DialectPostgres {
		return ` COLLATE "C"`
	}
	return ""
}

func (q *queries) CountTemplates(ctx context.Context, tenantID, status string) (int, error) {
	var n int
	err := q.queryRow(ctx, false, sqlCountTemplates, tenantID, status).Scan(&n)
	return n, wrap(err, "count templates")
}

func scanPrice(sc scanner) (*store.Price, error) {
	var p store.Price
	var updated int64
	if err := sc.Scan(&p.TenantID, &p.Channel, &p.Country, &p.Price, &updated); err != nil {
		return nil, err
	}
	p.UpdatedAt = fromMs(updated)
	return &p, nil
}

func (q *queries) PutPrice(ctx context.Context, p *store.Price) error {
	p.UpdatedAt = truncMs(p.UpdatedAt)
	_, err := q.exec(ctx, sqlPutPrice, p.TenantID, p.Channel, p.Country, p.Price, ms(p.UpdatedAt))
	return wrap(err, "put price")
}

func (q *queries) DeletePrice(ctx context.Context, tenantID, channel, country string) error {
	n, err := affected(q.exec(ctx, sqlDeletePrice, tenantID, channel, country))
	if err == nil && n == 0 {
		err = sql.ErrNoRows
	}
	return wrap(err, "delete price")
}

func (q *queries) GetPrice(ctx context.Context, tenantID, channel, country string) (*store.Price, error) {
	p, err := scanPrice(q.queryRow(ctx, false, sqlGetPrice, tenantID, channel, country))
	return p, wrap(err, "get price")
}

func (q *queries) ListPrices(ctx context.Context, tenantID string) ([]store.Price, error) {
	rows, err := q.query(ctx, false, sqlListPrices, tenantID)
	ps, err := scanAll(rows, err, scanPrice)
	return ps, wrap(err, "list prices")
}

func (q *queries) GetMessagingSettings(ctx context.Context, tenantID string) (*store.MessagingSettings, error) {
	var s store.MessagingSettings
	var updated int64
	err := q.queryRow(ctx, false, sqlGetMessagingSettings, tenantID).Scan(&s.TenantID, &s.Settings, &updated, &s.Version)
	if err != nil {
		return nil, wrap(err, "get messaging settings")
	}
	s.UpdatedAt = fromMs(updated)
	return &s, nil
}

// PutMessagingSettings inserts (s.Version 0) or updates (CAS on s.Version) and bumps s.Version.
func (q *queries) PutMessagingSettings(ctx context.Context, s *store.MessagingSettings) error {
	s.UpdatedAt = truncMs(s.UpdatedAt)
	jsonOrEmpty(&s.Settings)
	var n int64
	var err error
	if s.Version == 0 {
		n, err = affected(q.exec(ctx, sqlInsertMessagingSettings, s.TenantID, s.Settings, ms(s.UpdatedAt)))
	} else {
		n, err = affected(q.exec(ctx, sqlUpdateMessagingSettings, s.TenantID, s.Settings, ms(s.UpdatedAt), s.Version))
	}
	if err != nil {
		return wrap(err, "put messaging settings")
	}
	if n == 0 {
		return fmt.Errorf("sqlstore: put messaging settings: version changed: %w", store.ErrConflict)
	}
	s.Version++
	return nil
}

func (q *queries) CreateMessagingSession(ctx context.Context, s *store.MessagingSession) error {
	s.CreatedAt = truncMs(s.CreatedAt)
	_, err := q.exec(ctx, sqlInsertMessagingSession, s.TenantID, s.ChallengeID, s.CountryCode, ms(s.CreatedAt))
	return wrap(err, "create messaging session")
}

func (q *queries) GetMessagingSession(ctx context.Context, tenantID, challengeID string) (*store.MessagingSession, error) {
	var s store.MessagingSession
	var created int64
	err := q.queryRow(ctx, false, sqlGetMessagingSession, tenantID, challengeID).
		Scan(&s.TenantID, &s.ChallengeID, &s.CountryCode, &created)
	if err != nil {
		return nil, wrap(err, "get messaging session")
	}
	s.CreatedAt = fromMs(created)
	return &s, nil
}

// sessionSort maps otp_list's sort keys to expressions; only these fixed texts reach the SQL.
// Unfinished sessions have no finished_at and sort as if they finished last.
var sessionSort = map[string]string{
	"": "c.id", "id": "c.id", "status": "c.status", "channel": "c.channel", "recipient": "c.recipient",
	"created_at": "c.created_at", "finished_at": "coalesce(c.finished_at, 9223372036854775807)",
	"country_code": "s.country_code",
}

// ListMessagingSessions returns one page of the tenant's BSG sessions matching f and how many
// match in all. The join starts from bsg_sessions, whose (tenant_id, created_at) index serves
// the required period.
func (q *queries) ListMessagingSessions(ctx context.Context, tenantID string, f store.MessagingSessionFilter) ([]store.SessionRow, int, error) {
	col, ok := sessionSort[f.Sort]
	if !ok {
		return nil, 0, fmt.Errorf("sqlstore: list messaging sessions: unknown sort %q", f.Sort)
	}
	var where strings.Builder
	args := []any{tenantID}
	where.WriteString(` FROM bsg_sessions s JOIN challenges c ON c.tenant_id = s.tenant_id AND c.id = s.challenge_id
		WHERE s.tenant_id = $1`)
	and := func(cond string, v any) {
		args = append(args, v)
		fmt.Fprintf(&where, " AND %s $%d", cond, len(args))
	}
	if !f.From.IsZero() {
		and("s.created_at >=", ms(f.From))
	}
	if !f.To.IsZero() {
		and("s.created_at <", ms(f.To))
	}
	if f.Status != "" {
		and("c.status =", f.Status)
	}
	if f.Channel != "" {
		and("c.channel =", f.Channel)
	}
	if f.Recipient != "" {
		and("c.recipient =", f.Recipient)
	}
	if f.CountryCode != "" {
		and("s.country_code =", f.CountryCode)
	}
	if len(f.IDs) > 0 {
		fmt.Fprintf(&where, " AND s.challenge_id IN (%s)", placeholders(len(args)+1, len(f.IDs)))
		for _, id := range f.IDs {
			args = append(args, id)
		}
	}
	if !storableText(args) { // no row holds such text, and every filter here must match
		return nil, 0, nil
	}
	var total int
	if err := q.queryRow(ctx, false, `SELECT count(*)`+where.String(), args...).Scan(&total); err != nil {
		return nil, 0, wrap(err, "count messaging sessions")
	}
	dir := " ASC"
	if f.Desc {
		dir = " DESC"
	}
	text := col == "c.status" || col == "c.channel" || col == "c.recipient" || col == "s.country_code"
	order := col + q.collate(text) + dir
	if col != "c.id" {
		order += ", c.id" + dir
	}
	args = append(args, limit(f.Limit, 10, 500), max(f.Offset, 0))
	query := fmt.Sprintf(`SELECT %s, s.country_code%s ORDER BY %s LIMIT $%d OFFSET $%d`,
		sessionChallengeCols, where.String(), order, len(args)-1, len(args))
	rows, err := q.query(ctx, false, query, args...)
	out, err := scanAll(rows, err, func(sc scanner) (*store.SessionRow, error) {
		var country string
		c, err := scanChallenge(appendScanner{sc, []any{&country}})
		if err != nil {
			return nil, err
		}
		return &store.SessionRow{Challenge: *c, CountryCode: country}, nil
	})
	return out, total, wrap(err, "list messaging sessions")
}

// sessionChallengeCols are challengeCols qualified with the alias c.
var sessionChallengeCols = "c." + strings.ReplaceAll(strings.Join(strings.Fields(challengeCols), " "), ", ", ", c.")

// appendScanner scans extra columns after the ones its caller asks for.
type appendScanner struct {
	sc    scanner
	extra []any
}

func (a appendScanner) Scan(dest ...any) error { return a.sc.Scan(append(dest, a.extra...)...) }

// prependScanner scans extra columns before the ones its caller asks for.
type prependScanner struct {
	sc    scanner
	extra []any
}

func (p prependScanner) Scan(dest ...any) error {
	return p.sc.Scan(append(append([]any{}, p.extra...), dest...)...)
}

// CountPendingChallenges counts pending, unexpired challenges of one application for one
// recipient; in a PostgreSQL transaction it first takes an advisory lock on that triple.
func (q *queries) CountPendingChallenges(ctx context.Context, tenantID, applicationID, recipient string, now time.Time) (int, error) {
	if q.tx != nil && q.s.dialect == DialectPostgres {
		if _, err := q.exec(ctx, sqlPendingLock, rateLockKey(tenantID, "pending\x00"+applicationID, recipient)); err != nil {
			return 0, wrap(err, "count pending challenges: lock")
		}
	}
	query := sqlCountPending
	if q.s.dialect == DialectSQLite {
		query = sqlCountPendingSQLite
	}
	var n int
	err := q.queryRow(ctx, true, query, tenantID, recipient, applicationID, ms(now)).Scan(&n)
	return n, wrap(err, "count pending challenges")
}

// ListNumberedMessages returns the messages of the challenges, oldest first, with their numbers.
func (q *queries) ListNumberedMessages(ctx context.Context, tenantID string, challengeIDs []string) ([]store.NumberedMessage, error) {
	if len(challengeIDs) == 0 {
		return nil, nil
	}
	args := make([]any, 0, len(challengeIDs)+1)
	args = append(args, tenantID)
	for _, id := range challengeIDs {
		args = append(args, id)
	}
	query := `SELECT num, ` + messageCols + ` FROM messages WHERE tenant_id = $1 AND challenge_id IN (` +
		placeholders(2, len(challengeIDs)) + `) ORDER BY created_at, num`
	if len(challengeIDs) == 1 {
		query = sqlListNumberedOne
	}
	rows, err := q.query(ctx, false, query, args...)
	out, err := scanAll(rows, err, func(sc scanner) (*store.NumberedMessage, error) {
		var num sql.NullInt64
		m, err := scanMessage(prependScanner{sc, []any{&num}})
		if err != nil {
			return nil, err
		}
		return &store.NumberedMessage{Num: num.Int64, Message: *m}, nil
	})
	return out, wrap(err, "list numbered messages")
}

var sqlListNumberedOne = def(`SELECT num, ` + messageCols + ` FROM messages WHERE tenant_id = $1
	AND challenge_id IN ($2) ORDER BY created_at, num`)

// AddDailyCount adds c to its day's counter unless a cap would be exceeded.
func (q *queries) AddDailyCount(ctx context.Context, tenantID string, c store.DailyCount) (bool, error) {
	if c.Count < 0 || c.Amount < 0 || c.CapCount < 0 || c.CapAmount < 0 {
		return false, errors.New("sqlstore: add daily count: negative value")
	}
	if (c.CapCount > 0 && c.Count > c.CapCount) || (c.CapAmount > 0 && c.Amount > c.CapAmount) {
		return false, nil
	}
	var n int64
	err := q.queryRow(ctx, true, sqlAddDailyCount, tenantID, c.Scope, c.Key, c.Day, c.Count, c.Amount,
		c.CapCount, c.CapAmount).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, wrap(err, "add daily count")
	}
	if n == c.Count { // this call started the day's counter: forget earlier days of the key
		if _, err := q.exec(ctx, sqlDeleteOldCounters, tenantID, c.Scope, c.Key, c.Day); err != nil {
			return false, wrap(err, "add daily count: forget old days")
		}
	}
	return true, nil
}
