package store

// ProviderQueries is the part of Queries for configured delivery providers (generic HTTP,
// Twilio-compatible, SMPP, SMTP) and their delivery receipts.
type ProviderQueries interface {
}
