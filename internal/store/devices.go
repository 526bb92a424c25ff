package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// Device types.
const (
	DeviceTOTP  = "TOTP"
	DeviceHOTP  = "HOTP"
	DeviceSMS   = "SMS"
	DeviceEMAIL = "EMAIL"
	DevicePIN   = "PIN"
)

// Device statuses, as the Soffid SCIM dialect spells them. The stored status is one of these;
// a timed lock whose locked_until has passed still reads "L" in the row, and every reader (the
// engine in Go, the store in SQL through DeviceStatusAt) computes the effective status.
const (
	DeviceCreated   = "C" // enrolled, no correct code yet
	DeviceValidated = "V" // a correct code was seen (or an operator said so)
	DeviceDisabled  = "D" // switched off by an operator; never verifies
	DeviceLocked    = "L" // too many failures, or locked by an operator
)

// Device is a user's second factor. Secret holds, sealed with the keyring (associated data bound
// to the row), the HOTP/TOTP seed or the PIN's argon2id hash; SMS and EMAIL devices have none.
type Device struct {
	ID       string // UUIDv7
	Number   int64  // public numeric id (SCIM "id"), assigned by the database, never reused
	TenantID string
	UserID   string
	// UserLogin is the owner's login, filled by reads (a join); ignored by writes.
	UserLogin string
	// UserEnabled is whether the owner is enabled, filled by reads (the same join).
	UserEnabled bool
	Type        string
	Name        string
	Status      string
	Secret      []byte
	Algorithm   string // SHA1 | SHA256 | SHA512 (TOTP, HOTP)
	Digits      int    // 6–8 (TOTP, HOTP)
	Period      time.Duration
	// Counter is the next HOTP counter to accept (only moves forward).
	Counter int64
	// LastStep is the last TOTP time step accepted (-1: none); a code of this step or an earlier
	// one is a replay.
	LastStep int64
	Phone    string // SMS target, as given
	Email    string // EMAIL target, as given
	// ChallengeID is the verification session of the last SMS/EMAIL challenge.
	ChallengeID string
	// Fails counts consecutive failed verifications; Lockouts counts the locks since the last
	// success (each one longer).
	Fails    int
	Lockouts int
	// LockedUntil ends a timed lock; nil with status L is a lock only an operator lifts.
	LockedUntil *time.Time
	// Imported: the seed came from the caller, so it is never shown again (no URI, no QR).
	Imported    bool
	CreatedAt   time.Time
	UpdatedAt   time.Time
	LastUsedAt  *time.Time
	ValidatedAt *time.Time
	Version     int64
}

// StatusAt is the device's effective status at now: a timed lock that has run out reads as the
// status the device had before (V if it was ever validated, else C).
func (d *Device) StatusAt(now time.Time) string {
	return DeviceStatusAt(d.Status, d.LockedUntil, d.ValidatedAt, now)
}

// DeviceStatusAt is the effective status rule; sqlstore computes the same in SQL.
func DeviceStatusAt(status string, lockedUntil, validatedAt *time.Time, now time.Time) string {
	if status == DeviceLocked && lockedUntil != nil && !now.Before(*lockedUntil) {
		if validatedAt == nil {
			return DeviceCreated
		}
		return DeviceValidated
	}
	return status
}

// ---- Filters (SCIM) -----------------------------------------------------------------------

// FilterOp is the kind of a filter node.
type FilterOp string

// Filter node kinds and comparison operators (RFC 7644 §3.4.2.2).
const (
	FilterAnd FilterOp = "and"
	FilterOr  FilterOp = "or"
	FilterNot FilterOp = "not"
	FilterCmp FilterOp = "cmp"

	CmpEq = "eq"
	CmpNe = "ne"
	CmpCo = "co"
	CmpSw = "sw"
	CmpEw = "ew"
	CmpGt = "gt"
	CmpGe = "ge"
	CmpLt = "lt"
	CmpLe = "le"
	CmpPr = "pr"
)

// Filter is a store-neutral filter tree over the attributes of an allow-list (DeviceAttrs,
// UserAttrs). The SCIM dialect builds it from a parsed filter; the store turns it into a
// parameterised query. Semantics, the same in every backend:
//
//   - a comparison on an absent attribute (an empty optional string, a missing time) is false,
//     whatever the operator; pr is true exactly when the attribute is present;
//   - strings compare byte-wise (case-sensitive); attributes marked Folded hold lower-case values
//     and the caller lower-cases the compare value;
//   - a time compare value covers [Value, Value+Precision): eq matches inside it, gt after it,
//     ge from its start, lt before its start, le before its end; ne is "not eq";
//   - not is the boolean complement, so no three-valued logic leaks through.
type Filter struct {
	Op       FilterOp
	Children []Filter // and, or: two or more; not: exactly one

	Attr      string        // cmp: an attribute of the allow-list
	Cmp       string        // cmp: eq ne co sw ew gt ge lt le pr
	Value     any           // cmp (not pr): string, int64, bool or time.Time, per the attribute's kind
	Precision time.Duration // time values: the width of Value (≥ 1 ms)
}

// AttrKind is an attribute's value type.
type AttrKind int

// Attribute kinds.
const (
	AttrString AttrKind = iota + 1
	AttrInt
	AttrTime
	AttrBool
)

func (k AttrKind) String() string {
	switch k {
	case AttrString:
		return "string"
	case AttrInt:
		return "integer"
	case AttrTime:
		return "dateTime"
	case AttrBool:
		return "boolean"
	}
	return "unknown"
}

// FilterAttr describes one filterable, sortable attribute.
type FilterAttr struct {
	Kind AttrKind
	// Optional attributes may be absent (empty string or no time).
	Optional bool
	// Folded strings are stored lower-case; compare values must be lower-cased too.
	Folded bool
	// Int32 integers are stored in 32 bits (PostgreSQL INTEGER): a compare value must fit.
	Int32 bool
}

// DeviceAttrs are the device attributes a filter or a sort may name. Secrets (seeds, PINs) are
// not here: they cannot be filtered or sorted on.
var DeviceAttrs = map[string]FilterAttr{
	"number":   {Kind: AttrInt},
	"name":     {Kind: AttrString},
	"type":     {Kind: AttrString},
	"status":   {Kind: AttrString}, // the effective status at the query's Now
	"user":     {Kind: AttrString}, // the owner's login
	"fails":    {Kind: AttrInt, Int32: true},
	"created":  {Kind: AttrTime},
	"updated":  {Kind: AttrTime},
	"lastUsed": {Kind: AttrTime, Optional: true},
	"phone":    {Kind: AttrString, Optional: true},
	"email":    {Kind: AttrString, Optional: true, Folded: true},
	"userId":   {Kind: AttrString},
}

// UserAttrs are the user attributes a filter or a sort may name.
var UserAttrs = map[string]FilterAttr{
	"id":         {Kind: AttrString},
	"login":      {Kind: AttrString},
	"externalId": {Kind: AttrString, Optional: true},
	"firstName":  {Kind: AttrString, Optional: true},
	"lastName":   {Kind: AttrString, Optional: true},
	"email":      {Kind: AttrString, Optional: true, Folded: true},
	"phone":      {Kind: AttrString, Optional: true},
	"language":   {Kind: AttrString, Optional: true},
	"enabled":    {Kind: AttrBool},
	"created":    {Kind: AttrTime},
	"updated":    {Kind: AttrTime},
}

// ErrInvalidFilter: a filter or sort names an attribute that is not in the allow-list, applies
// an operator that does not fit the attribute, or exceeds the bounds. Stores wrap it.
var ErrInvalidFilter = errors.New("store: invalid filter")

// Bounds on a filter, checked by ValidateFilter before any query is built.
const (
	MaxFilterDepth = 16  // nesting of and/or/not
	MaxFilterNodes = 64  // comparisons and connectives together
	MaxFilterValue = 512 // bytes of one string compare value
)

// ValidateFilter checks f against attrs: known attributes, operators that fit their kinds,
// values of the right type, and the size bounds. Stores call it before building a query, so a
// tree that did not come from the SCIM parser is held to the same rules.
func ValidateFilter(f *Filter, attrs map[string]FilterAttr) error {
	n := 0
	return validateFilter(f, attrs, 1, &n)
}

func validateFilter(f *Filter, attrs map[string]FilterAttr, depth int, nodes *int) error {
	*nodes++
	if depth > MaxFilterDepth {
		return fmt.Errorf("filter nests deeper than %d", MaxFilterDepth)
	}
	if *nodes > MaxFilterNodes {
		return fmt.Errorf("filter has more than %d terms", MaxFilterNodes)
	}
	switch f.Op {
	case FilterAnd, FilterOr:
		if len(f.Children) < 2 {
			return fmt.Errorf("%s needs two operands", f.Op)
		}
	case FilterNot:
		if len(f.Children) != 1 {
			return fmt.Errorf("not needs one operand")
		}
	case FilterCmp:
		return validateCmp(f, attrs)
	default:
		return fmt.Errorf("unknown filter node %q", f.Op)
	}
	for i := range f.Children {
		if err := validateFilter(&f.Children[i], attrs, depth+1, nodes); err != nil {
			return err
		}
	}
	return nil
}

func validateCmp(f *Filter, attrs map[string]FilterAttr) error {
	a, ok := attrs[f.Attr]
	if !ok {
		return fmt.Errorf("attribute %q cannot be filtered on", f.Attr)
	}
	if len(f.Children) != 0 {
		return fmt.Errorf("a comparison has no operands")
	}
	switch f.Cmp {
	case CmpPr:
		if f.Value != nil {
			return fmt.Errorf("pr takes no value")
		}
		return nil
	case CmpEq, CmpNe:
	case CmpCo, CmpSw, CmpEw:
		if a.Kind != AttrString {
			return fmt.Errorf("%s applies to strings, and %s is a %s", f.Cmp, f.Attr, a.Kind)
		}
	case CmpGt, CmpGe, CmpLt, CmpLe:
		if a.Kind == AttrBool {
			return fmt.Errorf("%s does not apply to the boolean %s", f.Cmp, f.Attr)
		}
	default:
		return fmt.Errorf("unknown operator %q", f.Cmp)
	}
	switch v := f.Value.(type) {
	case string:
		if a.Kind != AttrString {
			return fmt.Errorf("%s is a %s, not a string", f.Attr, a.Kind)
		}
		if len(v) > MaxFilterValue {
			return fmt.Errorf("a compare value is longer than %d bytes", MaxFilterValue)
		}
		// No stored text holds a NUL or invalid UTF-8 (the stores refuse such text), so such a
		// value could only be answered by guessing: "eq" matches nothing but "ne" everything.
		if !utf8.ValidString(v) || strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("a compare value must be UTF-8 text without NUL characters")
		}
	case int64:
		if a.Kind != AttrInt {
			return fmt.Errorf("%s is a %s, not an integer", f.Attr, a.Kind)
		}
		if a.Int32 && (v < math.MinInt32 || v > math.MaxInt32) {
			return fmt.Errorf("%s is at most %d", f.Attr, math.MaxInt32)
		}
	case bool:
		if a.Kind != AttrBool {
			return fmt.Errorf("%s is a %s, not a boolean", f.Attr, a.Kind)
		}
	case time.Time:
		if a.Kind != AttrTime {
			return fmt.Errorf("%s is a %s, not a dateTime", f.Attr, a.Kind)
		}
		if f.Precision < time.Millisecond {
			return fmt.Errorf("a time value needs a precision of at least 1 ms")
		}
	default:
		return fmt.Errorf("%s needs a %s value", f.Attr, a.Kind)
	}
	return nil
}

// SortKey orders a listing by one attribute of the allow-list. Absent values sort last when
// ascending and first when descending; ties are broken by the resource's creation order.
type SortKey struct {
	Attr string
	Desc bool
}

// DeviceQuery selects a page of a tenant's devices.
type DeviceQuery struct {
	Filter *Filter // nil: every device
	Sort   *SortKey
	Offset int
	Limit  int // 0: only count
	// Now is the instant at which the effective status (a timed lock that ran out) is judged.
	Now time.Time
}

// UserQuery selects a page of a tenant's users.
type UserQuery struct {
	Filter *Filter
	Sort   *SortKey
	Offset int
	Limit  int
}

// MaxQueryLimit bounds one page of QueryDevices and QueryUsers.
const MaxQueryLimit = 1000

// DeviceQueries is the part of Queries for OTP devices of users (issue: OTP devices and SCIM).
type DeviceQueries interface {
	// CreateDevice inserts d with version 1 and sets d.Number from the database's sequence (never
	// reused, also after deletes). ErrNotFound if the user is not one of the tenant's;
	// ErrAlreadyExists if the id is taken.
	CreateDevice(ctx context.Context, d *Device) error
	GetDevice(ctx context.Context, tenantID, id string) (*Device, error)
	GetDeviceByNumber(ctx context.Context, tenantID string, number int64) (*Device, error)
	// ListUserDevices returns a user's devices, oldest first.
	ListUserDevices(ctx context.Context, tenantID, userID string) ([]Device, error)
	// QueryDevices returns one page of the devices matching q.Filter, in q.Sort order (default:
	// creation), and how many match in all. The filter is validated (ValidateFilter) and turned
	// into parameterised SQL; no value ever becomes SQL text.
	QueryDevices(ctx context.Context, tenantID string, q DeviceQuery) ([]Device, int, error)
	// UpdateDevice writes every mutable column (name, status, secret, targets, verification
	// state) if the stored version is still d.Version, else ErrConflict; sets d.Version.
	UpdateDevice(ctx context.Context, d *Device) error
	// SetDeviceOutcome writes only the verification state (status, fails, lockouts,
	// locked_until, last_step, counter, last_used_at, validated_at, challenge_id, updated_at)
	// if the stored version is still d.Version, else ErrConflict. When advanced is set the write
	// also demands that it moves last_step or counter strictly forward (… AND (last_step < new
	// OR counter < new)), so an accepted TOTP step or HOTP counter can never be accepted twice,
	// whatever the caller read.
	SetDeviceOutcome(ctx context.Context, d *Device, advanced bool) error
	// DeleteDevice deletes the device; ErrNotFound if it is not one of the tenant's.
	DeleteDevice(ctx context.Context, tenantID, id string) error
	// QueryUsers is QueryDevices for users (the SCIM Users resource).
	QueryUsers(ctx context.Context, tenantID string, q UserQuery) ([]User, int, error)
}
