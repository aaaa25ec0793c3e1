package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/warden-sh/warden/internal/wire"
)

// newClusterCmd is `warden cluster settings`: the cluster-wide settings
// auth keeps in storage, which apply at once, without a restart.
func newClusterCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Cluster-wide settings"}
	cmd.AddCommand(&cobra.Command{
		Use:   "settings [NAME=VALUE ...]",
		Short: "Show or change the cluster settings kept by auth (they apply at the next sign-in, no restart)",
		Long: `Without arguments, print the cluster settings: the value in effect and where
it comes from (set here, or the auth section of the warden start
configuration). With NAME=VALUE, change them; every auth instance reads the
new value at the next use. Settings:

  require_passkey=true|false   local users sign in only with a passkey
                               (until set: the configuration's auth.require_passkey)`,
		Example: "  warden cluster settings\n  warden cluster settings require_passkey=true",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.adminClient()
			if err != nil {
				return err
			}
			defer c.Close()
			var v *wire.ClusterSettingsView
			if len(args) == 0 {
				v, err = c.ClusterSettings(cmd.Context())
			} else {
				var in wire.ClusterSettings
				for _, a := range args {
					name, value, ok := strings.Cut(a, "=")
					if !ok || name != "require_passkey" {
						return fmt.Errorf("%q: give require_passkey=true|false", a)
					}
					b, err := strconv.ParseBool(value)
					if err != nil {
						return fmt.Errorf("require_passkey: %q is not true or false", value)
					}
					in.RequirePasskey = &b
				}
				v, err = c.UpdateClusterSettings(cmd.Context(), in)
			}
			if err != nil {
				return err
			}
			source := "configuration (auth.require_passkey)"
			if v.Stored.RequirePasskey != nil {
				source = "cluster settings"
			}
			textf(g.io.Out, "require_passkey: %t (%s)\n", v.Effective.RequirePasskey, source)
			return nil
		},
	})
	return cmd
}
