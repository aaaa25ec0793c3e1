package web

// SetExportPage sets the events an audit export reads at a time, for the
// tests of its paging; it returns the function that restores it.
func SetExportPage(n int) func() {
	old := exportPage
	exportPage = n
	return func() { exportPage = old }
}

// SkipSessionMFA makes the web terminal open sessions without the
// per-session MFA check (to show the proxy and node refuse them); it
// returns the function that restores it.
func SkipSessionMFA() func() {
	skipSessionMFA = true
	return func() { skipSessionMFA = false }
}
