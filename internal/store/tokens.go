package store

// TokenQueries is the part of Queries for one-time login tokens, OAuth signing keys and revocations, user OTPs for a purpose (issue: Acronis, OpenIAM, Haventec).
type TokenQueries interface {
}
