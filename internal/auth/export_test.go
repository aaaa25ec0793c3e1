package auth

// SweepRequests runs one pass of the access request sweeper, for tests that
// control the clock rather than wait for the ticker.
var SweepRequests = (*Server).sweepRequests

// Checkpoint signs an audit checkpoint now, as the sweeper does every
// checkpoint interval.
var Checkpoint = (*Server).checkpoint
