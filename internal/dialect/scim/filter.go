package scim

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	filter "github.com/scim2/filter-parser/v2"

	"github.com/otpd/otpd/internal/store"
)

// Filter bounds, checked before the parser runs (the parser backtracks; these keep its work
// small) and by the store again after translation.
const (
	MaxFilterLength = 2048
	MaxFilterDepth  = store.MaxFilterDepth
)

// attrDef maps one SCIM attribute path (lower-cased, without the schema URN) to an attribute of
// the store's allow-list.
type attrDef struct {
	store string // store attribute
	// fold lower-cases compare values (attributes stored lower-case); upper upper-cases them
	// (enumerations stored upper-case).
	fold, upper bool
}

// resource is what the translation needs to know about a resource type.
type resource struct {
	name   string
	urn    string             // the core schema URN, accepted as an attribute prefix
	attrs  map[string]attrDef // "name", "meta.created", "emails.value", …
	multi  map[string]string  // multi-valued attribute → the sub-attribute path holding its value
	secret map[string]bool    // write-only attributes: never filterable or sortable
	kinds  map[string]store.FilterAttr
}

var deviceResource = &resource{
	name: "OtpDevice",
	urn:  strings.ToLower(SchemaOtpDevice),
	attrs: map[string]attrDef{
		"id": {store: "number"}, "name": {store: "name"}, "type": {store: "type", upper: true},
		"user": {store: "user"}, "status": {store: "status", upper: true}, "fails": {store: "fails"},
		"created": {store: "created"}, "lastused": {store: "lastUsed"}, "phone": {store: "phone"},
		"email": {store: "email", fold: true}, "meta.created": {store: "created"},
		"meta.lastmodified": {store: "updated"},
	},
	secret: map[string]bool{"pin": true, "secret": true, "seed": true, "image": true, "uri": true},
	kinds:  store.DeviceAttrs,
}

var userResource = &resource{
	name: "User",
	urn:  strings.ToLower(SchemaUser),
	attrs: map[string]attrDef{
		"id": {store: "id"}, "username": {store: "login"}, "externalid": {store: "externalId"},
		"name.givenname": {store: "firstName"}, "name.familyname": {store: "lastName"},
		"emails.value": {store: "email", fold: true}, "phonenumbers.value": {store: "phone"},
		"active": {store: "enabled"}, "preferredlanguage": {store: "language"},
		"meta.created": {store: "created"}, "meta.lastmodified": {store: "updated"},
	},
	multi:  map[string]string{"emails": "emails.value", "phonenumbers": "phonenumbers.value"},
	secret: map[string]bool{"password": true},
	kinds:  store.UserAttrs,
}

// filterError is an invalidFilter answer.
type filterError struct{ msg string }

func (e *filterError) Error() string { return e.msg }

func badFilter(format string, a ...any) error { return &filterError{fmt.Sprintf(format, a...)} }

// parseFilter parses a SCIM filter (RFC 7644 §3.4.2.2) and translates it into a store filter
// over r's allow-list. Every failure is a *filterError (invalidFilter). It never panics: the
// parser's own panics, should it have any, become errors too.
func parseFilter(r *resource, raw string) (f *store.Filter, err error) {
	if len(raw) > MaxFilterLength {
		return nil, badFilter("the filter is longer than %d bytes", MaxFilterLength)
	}
	if d := nesting(raw); d > MaxFilterDepth {
		return nil, badFilter("the filter nests deeper than %d", MaxFilterDepth)
	}
	if strings.TrimSpace(raw) == "" {
		return nil, badFilter("the filter is empty")
	}
	if !utf8.ValidString(raw) {
		return nil, badFilter("the filter is not UTF-8")
	}
	defer func() {
		if v := recover(); v != nil {
			f, err = nil, badFilter("the filter cannot be parsed")
		}
	}()
	exp, perr := filter.ParseFilterNumber([]byte(raw))
	if perr != nil {
		return nil, badFilter("the filter cannot be parsed (RFC 7644 §3.4.2.2 grammar)")
	}
	t, err := r.translate(exp, "")
	if err != nil {
		return nil, err
	}
	if err := store.ValidateFilter(t, r.kinds); err != nil {
		return nil, badFilter("%v", err)
	}
	return t, nil
}

// nesting is the deepest parenthesis or bracket nesting outside string literals.
func nesting(s string) int {
	depth, deepest, quoted := 0, 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '(' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == ')' || c == ']':
			depth--
		}
	}
	return deepest
}

// translate turns a parsed expression into a store filter. within is the multi-valued
// attribute of an enclosing value path ("emails[…]").
func (r *resource) translate(e filter.Expression, within string) (*store.Filter, error) {
	switch e := e.(type) {
	case *filter.LogicalExpression:
		l, err := r.translate(e.Left, within)
		if err != nil {
			return nil, err
		}
		rt, err := r.translate(e.Right, within)
		if err != nil {
			return nil, err
		}
		op := store.FilterAnd
		if strings.EqualFold(string(e.Operator), "or") {
			op = store.FilterOr
		}
		return &store.Filter{Op: op, Children: []store.Filter{*l, *rt}}, nil
	case *filter.NotExpression:
		c, err := r.translate(e.Expression, within)
		if err != nil {
			return nil, err
		}
		return &store.Filter{Op: store.FilterNot, Children: []store.Filter{*c}}, nil
	case *filter.ValuePath:
		if within != "" {
			return nil, badFilter("value paths do not nest")
		}
		name, err := r.path(e.AttributePath, "")
		if err != nil {
			return nil, err
		}
		if _, ok := r.multi[name]; !ok {
			return nil, badFilter("%s is not a multi-valued attribute", e.AttributePath)
		}
		return r.translate(e.ValueFilter, name)
	case *filter.AttributeExpression:
		return r.compare(e, within)
	}
	return nil, badFilter("unsupported filter expression")
}

// path resolves an attribute path to its lower-cased name in r.attrs (or r.multi), checking the
// schema URN and refusing write-only attributes.
func (r *resource) path(p filter.AttributePath, within string) (string, error) {
	if p.URIPrefix != nil && !strings.EqualFold(*p.URIPrefix, r.urn) {
		return "", badFilter("the schema %q is not the %s schema", *p.URIPrefix, r.name)
	}
	name := strings.ToLower(p.AttributeName)
	if p.SubAttribute != nil {
		name += "." + strings.ToLower(*p.SubAttribute)
	}
	if within != "" {
		name = within + "." + name
	}
	if r.secret[strings.ToLower(p.AttributeName)] {
		return "", badFilter("%s is write-only: it cannot be filtered or sorted on", p.AttributeName)
	}
	return name, nil
}

// attr resolves an attribute path to its definition; a multi-valued attribute stands for its
// value sub-attribute (RFC 7644: "emails co …" filters on the values).
func (r *resource) attr(p filter.AttributePath, within string) (attrDef, string, error) {
	name, err := r.path(p, within)
	if err != nil {
		return attrDef{}, "", err
	}
	if v, ok := r.multi[name]; ok {
		name = v
	}
	d, ok := r.attrs[name]
	if !ok {
		return attrDef{}, "", badFilter("%q is not an attribute that can be filtered on", p.String())
	}
	return d, name, nil
}

func (r *resource) compare(e *filter.AttributeExpression, within string) (*store.Filter, error) {
	d, name, err := r.attr(e.AttributePath, within)
	if err != nil {
		return nil, err
	}
	op := strings.ToLower(string(e.Operator))
	f := &store.Filter{Op: store.FilterCmp, Attr: d.store, Cmp: op}
	if op == store.CmpPr {
		return f, nil
	}
	kind := r.kinds[d.store].Kind
	switch v := e.CompareValue.(type) {
	case string:
		s, err := unescape(v)
		if err != nil {
			return nil, err
		}
		switch kind {
		case store.AttrString:
			if d.fold {
				s = strings.ToLower(s)
			}
			if d.upper {
				s = strings.ToUpper(s)
			}
			f.Value = s
		case store.AttrTime:
			t, prec, ok := parseTime(s)
			if !ok {
				return nil, badFilter("%s needs a date such as \"2021-10-14 06:44:43\" or RFC 3339", name)
			}
			f.Value, f.Precision = t, prec
		default:
			return nil, badFilter("%s is a %s: compare it with a %s, not a string", name, kind, kind)
		}
	case json.Number:
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil || kind != store.AttrInt {
			return nil, badFilter("%s does not compare with the number %s", name, v)
		}
		f.Value = n
	case bool:
		if kind != store.AttrBool {
			return nil, badFilter("%s does not compare with a boolean", name)
		}
		f.Value = v
	case nil:
		// "attr eq null" is "not present" (RFC 7644 §3.4.2.2 treats null as unassigned).
		switch op {
		case store.CmpEq:
			return &store.Filter{Op: store.FilterNot, Children: []store.Filter{{Op: store.FilterCmp, Attr: d.store, Cmp: store.CmpPr}}}, nil
		case store.CmpNe:
			return &store.Filter{Op: store.FilterCmp, Attr: d.store, Cmp: store.CmpPr}, nil
		}
		return nil, badFilter("null compares only with eq and ne")
	default:
		return nil, badFilter("unsupported compare value")
	}
	return f, nil
}

// unescape reads the JSON escapes the parser leaves in a string value.
func unescape(s string) (string, error) {
	if !strings.ContainsRune(s, '\\') {
		return s, nil
	}
	var out string
	if err := json.Unmarshal([]byte(`"`+s+`"`), &out); err != nil {
		return "", badFilter("a string value has a bad escape")
	}
	return out, nil
}

// Time layouts a filter value may use, with the precision each carries.
var timeLayouts = []struct {
	layout string
	prec   time.Duration
}{
	{"2006-01-02 15:04:05", time.Second}, // the Soffid dialect's own format
	{time.RFC3339, time.Second},          // also reads a fraction: then the precision is 1 ms
	{"2006-01-02", 24 * time.Hour},
}

// parseTime reads a filter's date; dates without a zone are UTC. The precision is what the
// value spells out: a day, a second, or (with a fraction) a millisecond.
func parseTime(s string) (time.Time, time.Duration, bool) {
	fraction := strings.Contains(s, ".")
	for _, l := range timeLayouts {
		if t, err := time.Parse(l.layout, s); err == nil {
			if fraction && l.prec == time.Second {
				return t.UTC().Truncate(time.Millisecond), time.Millisecond, true
			}
			return t.UTC(), l.prec, true
		}
	}
	return time.Time{}, 0, false
}

// parseSort translates sortBy / sortOrder (RFC 7644 §3.4.2.3).
func parseSort(r *resource, by, order string) (*store.SortKey, error) {
	if by == "" {
		if order != "" && !strings.EqualFold(order, "ascending") && !strings.EqualFold(order, "descending") {
			return nil, &scimError{status: 400, scimType: "invalidValue", detail: "sortOrder must be ascending or descending"}
		}
		return nil, nil
	}
	if len(by) > 256 {
		return nil, badFilter("sortBy is too long")
	}
	p, err := parseAttrPath(by)
	if err != nil {
		return nil, badFilter("sortBy is not an attribute path")
	}
	d, _, err := r.attr(p, "")
	if err != nil {
		return nil, err
	}
	k := &store.SortKey{Attr: d.store}
	switch {
	case order == "" || strings.EqualFold(order, "ascending"):
	case strings.EqualFold(order, "descending"):
		k.Desc = true
	default:
		return nil, &scimError{status: 400, scimType: "invalidValue", detail: "sortOrder must be ascending or descending"}
	}
	return k, nil
}

// parseAttrPath parses an attribute path, turning a parser panic into an error.
func parseAttrPath(s string) (p filter.AttributePath, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = badFilter("not an attribute path")
		}
	}()
	return filter.ParseAttrPath([]byte(s))
}
