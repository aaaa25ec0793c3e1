package cli

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/mdp/qrterminal/v3"
	"github.com/spf13/cobra"

	"github.com/warden-sh/warden/internal/client"
	"github.com/warden-sh/warden/internal/wire"
)

func newMFACmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "mfa", Short: "Manage your MFA devices (TOTP, passkeys) and recovery codes",
		Long: `Your second factors: TOTP authenticators and WebAuthn devices (passkeys,
security keys), each with a name. Passkeys are registered in the browser
(the web UI's Security page); TOTP devices here or there. You always keep at
least one device. Recovery codes are one-time codes that stand in for the
second factor when you have lost your devices.`}
	var format string
	ls := &cobra.Command{Use: "ls", Short: "List your MFA devices", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := g.session()
			if err != nil {
				return err
			}
			defer s.close()
			devs, err := s.api.ListMFADevices(cmd.Context())
			if err != nil {
				return err
			}
			if done, err := printAs(g.io.Out, format, devs); done {
				return err
			}
			if err := render(g, "text", devs.Devices, "NAME\tKIND\tID\tCREATED\tLAST USED", func(d wire.MFADevice) []string {
				kind := d.Kind
				if d.Passkey {
					kind += " (passkey)"
				}
				last := "never"
				if !d.LastUsed.IsZero() {
					last = d.LastUsed.Local().Format(time.DateTime)
				}
				return []string{d.Name, kind, d.ID, d.CreatedAt.Local().Format(time.DateTime), last}
			}); err != nil {
				return err
			}
			textf(g.io.Out, "\nRecovery codes left: %d (warden mfa recovery-codes makes a new set)\n", devs.RecoveryCodesLeft)
			if devs.PasskeyRequired {
				textf(g.io.Out, "This cluster requires a passkey to sign in.\n")
			}
			return nil
		}}
	ls.Flags().StringVarP(&format, "output", "o", "text", "output format: text, json or yaml")

	var name, kind, otp, browser string
	add := &cobra.Command{Use: "add --name NAME [--type totp|passkey]", Short: "Add a TOTP device, or a passkey through your browser",
		Long: `Add an MFA device named NAME.

--type totp (the default) prints a QR code and the secret for an
authenticator app, then asks for its first code (or takes --otp).

--type passkey opens the web UI's Security page in your browser, where the
passkey or security key is registered (WebAuthn needs the browser); sign in
there if asked. --browser none prints the URL instead.`,
		Example: "  warden mfa add --name phone\n  warden mfa add --name laptop --type passkey",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := g.session()
			if err != nil {
				return err
			}
			defer s.close()
			switch kind {
			case "passkey", "webauthn":
				u := url.URL{Scheme: "https", Host: s.p.Proxy, Path: "/web/security", RawQuery: url.Values{"add": {name}}.Encode()}
				return openBrowser(g, browser, u.String())
			case "totp":
			default:
				return fmt.Errorf("--type %q: choose totp or passkey", kind)
			}
			ch, err := s.api.BeginAddMFADevice(cmd.Context(), wire.MFAAddRequest{Kind: "totp", Name: name})
			if err != nil {
				return err
			}
			out := g.io.Out
			textf(out, "Scan this QR code with your authenticator app:\n\n")
			qrterminal.GenerateWithConfig(ch.TOTPURL, qrterminal.Config{Level: qrterminal.L, Writer: out,
				HalfBlocks: true, BlackChar: qrterminal.BLACK_BLACK, WhiteChar: qrterminal.WHITE_WHITE,
				BlackWhiteChar: qrterminal.BLACK_WHITE, WhiteBlackChar: qrterminal.WHITE_BLACK, QuietZone: 1})
			textf(out, "\nor add it by hand: %s\nSecret: %s\n", ch.TOTPURL, ch.TOTPSecret)
			code := otp
			if code == "" {
				if code, err = g.io.prompt("Code from the new device", false); err != nil {
					return err
				}
			}
			d, err := s.api.FinishAddMFADevice(cmd.Context(), wire.MFAAddFinish{ID: ch.ID, OTP: strings.TrimSpace(code)})
			if err != nil {
				return err
			}
			textf(out, "MFA device %q added (%s).\n", d.Name, d.ID)
			return nil
		}}
	add.Flags().StringVar(&name, "name", "", "the device's name (required)")
	add.Flags().StringVar(&kind, "type", "totp", "totp or passkey")
	add.Flags().StringVar(&otp, "otp", "", "the new TOTP device's first code (prompted if not given)")
	add.Flags().StringVar(&browser, "browser", "", "with --type passkey: none prints the URL instead of opening a browser")
	_ = add.MarkFlagRequired("name")

	rm := &cobra.Command{Use: "rm NAME", Short: "Remove one of your MFA devices (never the last one)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.session()
			if err != nil {
				return err
			}
			defer s.close()
			if err := s.api.DeleteMFADevice(cmd.Context(), args[0]); err != nil {
				return err
			}
			textf(g.io.Out, "MFA device %q removed: it no longer signs you in.\n", args[0])
			return nil
		}}

	var code, rcBrowser string
	var withPasskey bool
	rc := &cobra.Command{Use: "recovery-codes", Short: "Make a new set of one-time recovery codes (needs a fresh MFA check)",
		Long: `Make 10 new one-time recovery codes; the old ones stop working. Each code
stands in once for the second factor at sign-in (type it where the
authenticator code goes). They are shown once: store them somewhere safe.

A fresh MFA check comes first: a code of one of your TOTP devices or one of
your current recovery codes (--otp, or prompted), or with --passkey one of
your passkeys, in your browser (--browser none prints the URL to open).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := g.session()
			if err != nil {
				return err
			}
			defer s.close()
			answer := &wire.MFAResponse{OTP: strings.TrimSpace(code)}
			switch {
			case withPasskey:
				if answer, err = client.MFAWithPasskey(cmd.Context(), s.api, func(u string) error { return openBrowser(g, rcBrowser, u) }, 0); err != nil {
					return err
				}
			case code == "":
				if code, err = g.io.prompt("Code from your authenticator (or a recovery code)", false); err != nil {
					return err
				}
				answer.OTP = strings.TrimSpace(code)
			}
			res, err := s.api.RegenerateRecoveryCodes(cmd.Context(), *answer)
			if err != nil {
				return err
			}
			textf(g.io.Out, "Your new recovery codes (each works once; the old ones no longer do):\n\n")
			for _, c := range res.Codes {
				textf(g.io.Out, "  %s\n", c)
			}
			return nil
		}}
	rc.Flags().StringVar(&code, "otp", "", "a TOTP code or a current recovery code (prompted if not given)")
	rc.Flags().BoolVar(&withPasskey, "passkey", false, "check with a passkey, in your browser")
	rc.Flags().StringVar(&rcBrowser, "browser", "", "with --passkey: none prints the URL instead of opening a browser")
	cmd.AddCommand(ls, add, rm, rc, newMFASessionCmd(g))
	return cmd
}
