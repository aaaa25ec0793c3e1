// Package wire holds the API's request and response bodies (JSON) and the
// errors a client can tell apart. auth takes and returns these types, api
// encodes them, and clients (client, cli) use them without importing auth:
// the layer a client depends on is the wire, not the authority. Plain Go:
// no net/http, no storage.
package wire
