package store

// MessagingQueries is the part of Queries for templates, the price table and delivery providers (issue: BSG 2FA API and SMS/Viber delivery).
type MessagingQueries interface {
}
