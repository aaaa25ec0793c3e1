package wire

// ClusterSettings are the cluster-wide settings auth keeps in storage,
// read again at every use, so that a change takes effect at once on every
// auth instance, without a restart. A nil field is unset: the value of
// the `warden start` configuration (auth.*) applies.
type ClusterSettings struct {
	// RequirePasskey: local users sign in only with a passkey.
	RequirePasskey *bool `json:"require_passkey,omitempty"`
}

// ClusterSettingsView is the settings in storage and the values in
// effect (storage, else the configuration).
type ClusterSettingsView struct {
	Stored    ClusterSettings `json:"stored"`
	Effective struct {
		RequirePasskey bool `json:"require_passkey"`
	} `json:"effective"`
}
