package store

import (
	"math"
	"testing"
)

// TestValidateFilterIntRange: a compare value that does not fit a 32-bit column is refused up
// front (PostgreSQL would fail the statement; SQLite would compare it).
func TestValidateFilterIntRange(t *testing.T) {
	for v, ok := range map[int64]bool{0: true, math.MaxInt32: true, math.MinInt32: true, math.MaxInt32 + 1: false, math.MaxInt64: false, math.MinInt64: false} {
		f := &Filter{Op: FilterCmp, Attr: "fails", Cmp: CmpGt, Value: v}
		if err := ValidateFilter(f, DeviceAttrs); (err == nil) != ok {
			t.Errorf("fails gt %d: %v", v, err)
		}
	}
	// number is 64-bit: any int64 is a fair compare value.
	if err := ValidateFilter(&Filter{Op: FilterCmp, Attr: "number", Cmp: CmpGt, Value: int64(math.MaxInt64)}, DeviceAttrs); err != nil {
		t.Errorf("number gt MaxInt64: %v", err)
	}
}
