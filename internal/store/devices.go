package store

// DeviceQueries is the part of Queries for OTP devices of users (issue: OTP devices and SCIM).
type DeviceQueries interface {
}
