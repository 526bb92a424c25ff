package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/otpd/otpd/internal/store"
)

// OTP devices. Reads join the owner's login (the SCIM "user" attribute); writes never touch it.

const deviceCols = `d.id, d.number, d.tenant_id, d.user_id, u.login, d.type, d.name, d.status,
	d.secret, d.algorithm, d.digits, d.period_s, d.counter, d.last_step, d.phone, d.email,
	d.challenge_id, d.fails, d.lockouts, d.locked_until, d.imported, d.created_at, d.updated_at,
	d.last_used_at, d.validated_at, d.version, u.enabled`

const deviceFrom = ` FROM devices d JOIN users u ON u.tenant_id = d.tenant_id AND u.id = d.user_id`

var (
	sqlInsertDevice = def(`INSERT INTO devices (id, tenant_id, user_id, type, name, status, secret,
		algorithm, digits, period_s, counter, last_step, phone, email, challenge_id, fails, lockouts,
		locked_until, imported, created_at, updated_at, last_used_at, validated_at, version)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
		$20, $21, $22, $23, $24) RETURNING number`)
	sqlGetDevice         = def(`SELECT ` + deviceCols + deviceFrom + ` WHERE d.tenant_id = $1 AND d.id = $2`)
	sqlGetDeviceByNumber = def(`SELECT ` + deviceCols + deviceFrom + ` WHERE d.tenant_id = $1 AND d.number = $2`)
	sqlListUserDevices   = def(`SELECT ` + deviceCols + deviceFrom + ` WHERE d.tenant_id = $1 AND d.user_id = $2 ORDER BY d.number`)
	sqlUpdateDevice      = def(`UPDATE devices SET name = $3, status = $4, secret = $5, algorithm = $6,
		digits = $7, period_s = $8, counter = $9, last_step = $10, phone = $11, email = $12,
		challenge_id = $13, fails = $14, lockouts = $15, locked_until = $16, imported = $17,
		updated_at = $18, last_used_at = $19, validated_at = $20, version = version + 1
		WHERE tenant_id = $1 AND id = $2 AND version = $21`)
	// The outcome of a verification: the narrow write of the hot path.
	sqlSetDeviceOutcome = def(`UPDATE devices SET status = $3, fails = $4, lockouts = $5,
		locked_until = $6, last_step = $7, counter = $8, last_used_at = $9, validated_at = $10,
		challenge_id = $11, updated_at = $12, version = version + 1
		WHERE tenant_id = $1 AND id = $2 AND version = $13`)
	// The same for an accepted TOTP step or HOTP counter: the statement itself refuses to accept a
	// step or counter that is not beyond the stored one.
	sqlAcceptDeviceCode = def(`UPDATE devices SET status = $3, fails = $4, lockouts = $5,
		locked_until = $6, last_step = $7, counter = $8, last_used_at = $9, validated_at = $10,
		challenge_id = $11, updated_at = $12, version = version + 1
		WHERE tenant_id = $1 AND id = $2 AND version = $13 AND (last_step < $7 OR counter < $8)`)
	sqlDeviceExists = def(`SELECT 1 FROM devices WHERE tenant_id = $1 AND id = $2`)
	sqlDeleteDevice = def(`DELETE FROM devices WHERE tenant_id = $1 AND id = $2`)
)

func scanDevice(sc scanner) (*store.Device, error) {
	var d store.Device
	var period, created, updated int64
	var locked, lastUsed, validated sql.NullInt64
	err := sc.Scan(&d.ID, &d.Number, &d.TenantID, &d.UserID, &d.UserLogin, &d.Type, &d.Name, &d.Status,
		&d.Secret, &d.Algorithm, &d.Digits, &period, &d.Counter, &d.LastStep, &d.Phone, &d.Email,
		&d.ChallengeID, &d.Fails, &d.Lockouts, &locked, &d.Imported, &created, &updated,
		&lastUsed, &validated, &d.Version, &d.UserEnabled)
	if err != nil {
		return nil, err
	}
	d.Period = time.Duration(period) * time.Second
	d.LockedUntil = fromNullMs(locked)
	d.CreatedAt = fromMs(created)
	d.UpdatedAt = fromMs(updated)
	d.LastUsedAt = fromNullMs(lastUsed)
	d.ValidatedAt = fromNullMs(validated)
	return &d, nil
}

// normalizeDevice rounds d's times to what the columns hold.
func normalizeDevice(d *store.Device) {
	d.Period = d.Period.Truncate(time.Second)
	d.LockedUntil = truncMsPtr(d.LockedUntil)
	d.CreatedAt = truncMs(d.CreatedAt)
	d.UpdatedAt = truncMs(d.UpdatedAt)
	d.LastUsedAt = truncMsPtr(d.LastUsedAt)
	d.ValidatedAt = truncMsPtr(d.ValidatedAt)
}

// CreateDevice inserts d with version 1 and reads back its number.
func (q *queries) CreateDevice(ctx context.Context, d *store.Device) error {
	if d.ID == "" {
		d.ID = newID()
	}
	normalizeDevice(d)
	d.Version = 1
	err := q.queryRow(ctx, true, sqlInsertDevice, d.ID, d.TenantID, d.UserID, d.Type, d.Name, d.Status,
		nullBytes(d.Secret), d.Algorithm, d.Digits, int64(d.Period/time.Second), d.Counter, d.LastStep,
		d.Phone, d.Email, d.ChallengeID, d.Fails, d.Lockouts, nullMs(d.LockedUntil), d.Imported,
		ms(d.CreatedAt), ms(d.UpdatedAt), nullMs(d.LastUsedAt), nullMs(d.ValidatedAt), d.Version).Scan(&d.Number)
	return wrap(err, "create device")
}

func (q *queries) GetDevice(ctx context.Context, tenantID, id string) (*store.Device, error) {
	d, err := scanDevice(q.queryRow(ctx, false, sqlGetDevice, tenantID, id))
	return d, wrap(err, "get device")
}

func (q *queries) GetDeviceByNumber(ctx context.Context, tenantID string, number int64) (*store.Device, error) {
	d, err := scanDevice(q.queryRow(ctx, false, sqlGetDeviceByNumber, tenantID, number))
	return d, wrap(err, "get device by number")
}

// ListUserDevices returns the user's devices, oldest first.
func (q *queries) ListUserDevices(ctx context.Context, tenantID, userID string) ([]store.Device, error) {
	rows, err := q.query(ctx, false, sqlListUserDevices, tenantID, userID)
	ds, err := scanAll(rows, err, scanDevice)
	return ds, wrap(err, "list user devices")
}

// UpdateDevice writes every mutable column if the stored version is still d.Version.
func (q *queries) UpdateDevice(ctx context.Context, d *store.Device) error {
	normalizeDevice(d)
	n, err := affected(q.exec(ctx, sqlUpdateDevice, d.TenantID, d.ID, d.Name, d.Status, nullBytes(d.Secret),
		d.Algorithm, d.Digits, int64(d.Period/time.Second), d.Counter, d.LastStep, d.Phone, d.Email,
		d.ChallengeID, d.Fails, d.Lockouts, nullMs(d.LockedUntil), d.Imported, ms(d.UpdatedAt),
		nullMs(d.LastUsedAt), nullMs(d.ValidatedAt), d.Version))
	if err != nil {
		return wrap(err, "update device")
	}
	if n == 0 {
		return q.whyNotUpdated(ctx, sqlDeviceExists, "update device", d.TenantID, d.ID)
	}
	d.Version++
	return nil
}

// SetDeviceOutcome writes the verification state if the stored version is still d.Version;
// with advanced, only if the write moves last_step or counter forward.
func (q *queries) SetDeviceOutcome(ctx context.Context, d *store.Device, advanced bool) error {
	normalizeDevice(d)
	query := sqlSetDeviceOutcome
	if advanced {
		query = sqlAcceptDeviceCode
	}
	n, err := affected(q.exec(ctx, query, d.TenantID, d.ID, d.Status, d.Fails, d.Lockouts,
		nullMs(d.LockedUntil), d.LastStep, d.Counter, nullMs(d.LastUsedAt), nullMs(d.ValidatedAt),
		d.ChallengeID, ms(d.UpdatedAt), d.Version))
	if err != nil {
		return wrap(err, "set device outcome")
	}
	if n == 0 {
		return q.whyNotUpdated(ctx, sqlDeviceExists, "set device outcome", d.TenantID, d.ID)
	}
	d.Version++
	return nil
}

func (q *queries) DeleteDevice(ctx context.Context, tenantID, id string) error {
	n, err := affected(q.exec(ctx, sqlDeleteDevice, tenantID, id))
	if err == nil && n == 0 {
		err = sql.ErrNoRows
	}
	return wrap(err, "delete device")
}

// deviceStatusSQL is store.DeviceStatusAt in SQL: a timed lock that ran out by the query's now
// (%[1]s) reads as the status before it.
const deviceStatusSQL = `(CASE WHEN d.status = 'L' AND d.locked_until IS NOT NULL AND d.locked_until <= %[1]s
	THEN (CASE WHEN d.validated_at IS NULL THEN 'C' ELSE 'V' END) ELSE d.status END)`

// statusColumn marks the computed status in a column map.
const statusColumn = "@status"

// deviceColumns maps store.DeviceAttrs to SQL expressions. Every key of store.DeviceAttrs has
// one (a test checks); only these fixed texts ever reach the query.
var deviceColumns = map[string]string{
	"number":   "d.number",
	"name":     "d.name",
	"type":     "d.type",
	"status":   statusColumn,
	"user":     "u.login",
	"fails":    "d.fails",
	"created":  "d.created_at",
	"updated":  "d.updated_at",
	"lastUsed": "d.last_used_at",
	"phone":    "d.phone",
	"email":    "d.email",
	"userId":   "d.user_id",
}

// QueryDevices returns a page of the tenant's devices matching q and the number that match.
func (q *queries) QueryDevices(ctx context.Context, tenantID string, dq store.DeviceQuery) ([]store.Device, int, error) {
	b := &filterSQL{dialect: q.s.dialect, attrs: store.DeviceAttrs, cols: deviceColumns,
		args: []any{tenantID}, now: ms(dq.Now)}
	where := "d.tenant_id = $1"
	if err := b.checkSort(dq.Sort); err != nil {
		return nil, 0, fmt.Errorf("sqlstore: query devices: %w", err)
	}
	if dq.Filter != nil {
		cond, err := b.build(dq.Filter)
		if err != nil {
			return nil, 0, fmt.Errorf("sqlstore: query devices: %w", err)
		}
		where += " AND " + cond
	}
	var total int
	if err := q.queryRow(ctx, false, `SELECT count(*)`+deviceFrom+` WHERE `+where, b.args...).Scan(&total); err != nil {
		return nil, 0, wrap(err, "count devices")
	}
	if dq.Limit <= 0 || dq.Offset >= total {
		return nil, total, nil
	}
	order, err := b.orderBy(dq.Sort, "d.number")
	if err != nil {
		return nil, 0, fmt.Errorf("sqlstore: query devices: %w", err)
	}
	args := append(b.args, min(dq.Limit, store.MaxQueryLimit), max(dq.Offset, 0))
	text := fmt.Sprintf(`SELECT %s%s WHERE %s ORDER BY %s LIMIT $%d OFFSET $%d`,
		deviceCols, deviceFrom, where, order, len(args)-1, len(args))
	rows, err := q.query(ctx, false, text, args...)
	ds, err := scanAll(rows, err, scanDevice)
	return ds, total, wrap(err, "query devices")
}

// userColumns maps store.UserAttrs to SQL expressions over the users table (alias u).
var userColumns = map[string]string{
	"id":         "u.id",
	"login":      "u.login",
	"externalId": "u.external_id",
	"firstName":  "u.first_name",
	"lastName":   "u.last_name",
	"email":      "u.email",
	"phone":      "u.phone",
	"language":   "u.language",
	"enabled":    "u.enabled",
	"created":    "u.created_at",
	"updated":    "u.updated_at",
}

const userColsU = `u.id, u.tenant_id, u.login, u.email, u.phone, u.external_id, u.first_name,
	u.last_name, u.language, u.enabled, u.role, u.created_at, u.updated_at, u.version`

// QueryUsers returns a page of the tenant's users matching q and the number that match.
func (q *queries) QueryUsers(ctx context.Context, tenantID string, uq store.UserQuery) ([]store.User, int, error) {
	b := &filterSQL{dialect: q.s.dialect, attrs: store.UserAttrs, cols: userColumns, args: []any{tenantID}}
	where := "u.tenant_id = $1"
	if err := b.checkSort(uq.Sort); err != nil {
		return nil, 0, fmt.Errorf("sqlstore: query users: %w", err)
	}
	if uq.Filter != nil {
		cond, err := b.build(uq.Filter)
		if err != nil {
			return nil, 0, fmt.Errorf("sqlstore: query users: %w", err)
		}
		where += " AND " + cond
	}
	var total int
	if err := q.queryRow(ctx, false, `SELECT count(*) FROM users u WHERE `+where, b.args...).Scan(&total); err != nil {
		return nil, 0, wrap(err, "count users")
	}
	if uq.Limit <= 0 || uq.Offset >= total {
		return nil, total, nil
	}
	order, err := b.orderBy(uq.Sort, "u.created_at, u.id")
	if err != nil {
		return nil, 0, fmt.Errorf("sqlstore: query users: %w", err)
	}
	args := append(b.args, min(uq.Limit, store.MaxQueryLimit), max(uq.Offset, 0))
	text := fmt.Sprintf(`SELECT %s FROM users u WHERE %s ORDER BY %s LIMIT $%d OFFSET $%d`,
		userColsU, where, order, len(args)-1, len(args))
	rows, err := q.query(ctx, false, text, args...)
	us, err := scanAll(rows, err, scanUser)
	return us, total, wrap(err, "query users")
}

// filterSQL turns a store.Filter into a parameterised WHERE condition. Attribute names select
// fixed SQL expressions from cols; every value becomes a $N parameter. The result never holds a
// NULL-valued sub-expression (absent attributes are tested explicitly), so NOT is the plain
// boolean complement on both engines.
type filterSQL struct {
	dialect string
	attrs   map[string]store.FilterAttr
	cols    map[string]string
	args    []any
	b       strings.Builder
	now     int64  // the instant the computed status is judged at (Unix ms)
	nowArg  string // its placeholder, once bound
}

// column returns the SQL expression of an attribute.
func (f *filterSQL) column(attr string) (string, bool) {
	col, ok := f.cols[attr]
	if col == statusColumn {
		if f.nowArg == "" {
			f.nowArg = f.param(f.now)
		}
		col = fmt.Sprintf(deviceStatusSQL, f.nowArg)
	}
	return col, ok
}

func (f *filterSQL) build(t *store.Filter) (string, error) {
	if err := store.ValidateFilter(t, f.attrs); err != nil {
		return "", fmt.Errorf("%w: %v", store.ErrInvalidFilter, err)
	}
	f.b.Reset()
	if err := f.node(t); err != nil {
		return "", err
	}
	return "(" + f.b.String() + ")", nil
}

func (f *filterSQL) param(v any) string {
	f.args = append(f.args, v)
	return fmt.Sprintf("$%d", len(f.args))
}

// textParam binds a string; PostgreSQL gets an explicit type where a function needs one.
func (f *filterSQL) textParam(v string) string {
	return "CAST(" + f.param(v) + " AS TEXT)"
}

// collate makes string ordering byte-wise on both engines (SQLite's BINARY is already; a
// PostgreSQL database may default to a linguistic collation).
func (f *filterSQL) collate() string {
	if f.dialect == DialectPostgres {
		return ` COLLATE "C"`
	}
	return ""
}

func (f *filterSQL) node(t *store.Filter) error {
	switch t.Op {
	case store.FilterAnd, store.FilterOr:
		f.b.WriteString("(")
		for i := range t.Children {
			if i > 0 {
				f.b.WriteString(" " + strings.ToUpper(string(t.Op)) + " ")
			}
			if err := f.node(&t.Children[i]); err != nil {
				return err
			}
		}
		f.b.WriteString(")")
		return nil
	case store.FilterNot:
		f.b.WriteString("(NOT ")
		if err := f.node(&t.Children[0]); err != nil {
			return err
		}
		f.b.WriteString(")")
		return nil
	}
	return f.cmp(t)
}

func (f *filterSQL) cmp(t *store.Filter) error {
	a := f.attrs[t.Attr]
	col, ok := f.column(t.Attr)
	if !ok {
		return fmt.Errorf("%w: attribute %q has no column", store.ErrInvalidFilter, t.Attr)
	}
	// present: the condition under which the attribute has a value.
	present := ""
	if a.Optional {
		if a.Kind == store.AttrString {
			present = col + " <> ''"
		} else {
			present = col + " IS NOT NULL"
		}
	}
	if t.Cmp == store.CmpPr {
		if present == "" {
			f.b.WriteString("(1 = 1)")
		} else {
			f.b.WriteString("(" + present + ")")
		}
		return nil
	}
	cond, err := f.compare(col, a, t)
	if err != nil {
		return err
	}
	if present != "" {
		cond = present + " AND " + cond
	}
	f.b.WriteString("(" + cond + ")")
	return nil
}

func (f *filterSQL) compare(col string, a store.FilterAttr, t *store.Filter) (string, error) {
	ops := map[string]string{store.CmpEq: "=", store.CmpNe: "<>", store.CmpGt: ">", store.CmpGe: ">=",
		store.CmpLt: "<", store.CmpLe: "<="}
	switch v := t.Value.(type) {
	case string:
		switch t.Cmp {
		case store.CmpCo:
			if f.dialect == DialectPostgres {
				return "strpos(" + col + ", " + f.textParam(v) + ") > 0", nil
			}
			return "instr(" + col + ", " + f.textParam(v) + ") > 0", nil
		case store.CmpSw:
			p := f.textParam(v)
			return "substr(" + col + ", 1, length(" + p + ")) = " + p, nil
		case store.CmpEw:
			p := f.textParam(v)
			// A shorter column value yields a start ≤ 0 and never equals the longer value.
			return "length(" + col + ") >= length(" + p + ") AND substr(" + col + ", length(" + col +
				") - length(" + p + ") + 1) = " + p, nil
		case store.CmpEq:
			if v != "" && !a.Optional {
				// Redundant, but it lets the planner use partial indexes "WHERE col <> ''".
				return col + " = " + f.textParam(v) + " AND " + col + " <> ''", nil
			}
			return col + " = " + f.textParam(v), nil
		case store.CmpNe:
			return col + " <> " + f.textParam(v), nil
		default:
			return col + f.collate() + " " + ops[t.Cmp] + " " + f.textParam(v) + f.collate(), nil
		}
	case int64:
		return col + " " + ops[t.Cmp] + " " + f.param(v), nil
	case bool:
		return col + " " + ops[t.Cmp] + " " + f.param(v), nil
	case time.Time:
		from, to := ms(v), ms(v.Add(t.Precision))
		switch t.Cmp {
		case store.CmpEq:
			return col + " >= " + f.param(from) + " AND " + col + " < " + f.param(to), nil
		case store.CmpNe:
			return "NOT (" + col + " >= " + f.param(from) + " AND " + col + " < " + f.param(to) + ")", nil
		case store.CmpGt:
			return col + " >= " + f.param(to), nil
		case store.CmpGe:
			return col + " >= " + f.param(from), nil
		case store.CmpLt:
			return col + " < " + f.param(from), nil
		case store.CmpLe:
			return col + " < " + f.param(to), nil
		}
	}
	return "", fmt.Errorf("%w: unsupported comparison on %s", store.ErrInvalidFilter, t.Attr)
}

// checkSort refuses a sort key outside the allow-list.
func (f *filterSQL) checkSort(key *store.SortKey) error {
	if key == nil {
		return nil
	}
	_, ok := f.attrs[key.Attr]
	_, has := f.cols[key.Attr]
	if !ok || !has {
		return fmt.Errorf("%w: attribute %q cannot be sorted on", store.ErrInvalidFilter, key.Attr)
	}
	return nil
}

// orderBy returns the ORDER BY list for key, then tie.
func (f *filterSQL) orderBy(key *store.SortKey, tie string) (string, error) {
	if key == nil {
		return tie, nil
	}
	a, ok := f.attrs[key.Attr]
	col, has := f.column(key.Attr)
	if !ok || !has {
		return "", fmt.Errorf("%w: attribute %q cannot be sorted on", store.ErrInvalidFilter, key.Attr)
	}
	dir := " ASC"
	if key.Desc {
		dir = " DESC"
	}
	var b strings.Builder
	if a.Optional { // absent values last when ascending, first when descending
		absent := col + " IS NULL"
		if a.Kind == store.AttrString {
			absent = col + " = ''"
		}
		b.WriteString("(CASE WHEN " + absent + " THEN 1 ELSE 0 END)" + dir + ", ")
	}
	if a.Kind == store.AttrString {
		b.WriteString(col + f.collate() + dir)
	} else {
		b.WriteString(col + dir)
	}
	b.WriteString(", " + tie)
	return b.String(), nil
}
