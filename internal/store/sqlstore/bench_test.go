package sqlstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/store"
	"github.com/otpd/otpd/internal/store/storetest"
)

// BenchmarkCheckPath is the engine's code check as the store sees it: authenticate the API key
// (read pool), then lock the challenge and write it back in one transaction.
func BenchmarkCheckPath(b *testing.B) {
	for _, be := range storetest.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			s := storetest.Open(b, be.NewDSN(b))
			ctx := context.Background()
			now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
			if err := s.CreateTenant(ctx, &store.Tenant{ID: "tn", Name: "tn", CreatedAt: now}); err != nil {
				b.Fatal(err)
			}
			if err := s.CreateAPIKey(ctx, &store.APIKey{ID: "kid", TenantID: "tn", Role: store.RoleApp, SecretHash: []byte("h"), CreatedAt: now}); err != nil {
				b.Fatal(err)
			}
			const n = 1000
			for i := range n {
				c := &store.Challenge{ID: fmt.Sprintf("ch-%04d", i), TenantID: "tn", Channel: "sms", Recipient: "+15550100001",
					CodeHash: make([]byte, 36), CodeLength: 6, Status: store.StatusPending, MaxAttempts: 1 << 30, MaxSends: 5,
					TTL: time.Hour, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
				if err := s.CreateChallenge(ctx, c); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i++
					if _, err := s.GetAPIKey(ctx, "kid"); err != nil {
						b.Error(err)
						return
					}
					id := fmt.Sprintf("ch-%04d", i%n)
					err := s.InTx(ctx, func(q store.Queries) error {
						c, err := q.GetChallengeForUpdate(ctx, "tn", id)
						if err != nil {
							return err
						}
						c.Attempts++
						return q.UpdateChallenge(ctx, c)
					})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
