package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/warden-sh/warden/internal/access"
	"github.com/warden-sh/warden/internal/client"
	"github.com/warden-sh/warden/internal/wire"
)

func newRequestCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "request",
		Short: "Just-in-time access: request extra roles, review, use, revoke",
		Long: `Request extra roles for a while, with a reason. Reviewers allowed by their roles
approve or deny (some roles need several approvals). Once approved, the
request's roles are added to your certificates until the request expires.`,
	}
	cmd.AddCommand(newRequestCreateCmd(g), newRequestLsCmd(g), newRequestShowCmd(g), newRequestReviewCmd(g),
		newRequestUseCmd(g), newRequestRevokeCmd(g))
	return cmd
}

func newRequestCreateCmd(g *globals) *cobra.Command {
	var in wire.CreateAccessRequest
	var roles, reviewers string
	var nowait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:     "create --roles ROLE[,ROLE] --reason TEXT [--duration 2h] [--reviewers a,b] [--nowait]",
		Short:   "Request roles; waits for the decision and then uses the approved request",
		Example: `  warden request create --roles prod-admin --reason "INC-123" --duration 2h`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in.Roles, in.Reviewers = splitList(roles), splitList(reviewers)
			if len(in.Roles) == 0 {
				return errors.New("--roles is required")
			}
			s, err := g.session()
			if err != nil {
				return err
			}
			defer s.close()
			r, err := s.api.CreateAccessRequest(cmd.Context(), in)
			if err != nil {
				return err
			}
			textf(g.io.Out, "Request %s created: %s for %s, needs %d approval(s).\n", r.ID, strings.Join(r.Roles, ","), humanDuration(r.Duration), r.Thresholds.Approve)
			if nowait {
				textf(g.io.Out, "When it is approved: warden request use %s\n", r.ID)
				return nil
			}
			textf(g.io.Err, "Waiting for reviewers (Ctrl-C to stop waiting; the request stays open)...\n")
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			for r.State == access.StatePending {
				select {
				case <-ctx.Done():
					return fmt.Errorf("still pending after %s; check later with: warden request show %s", timeout, r.ID)
				case <-time.After(time.Second):
				}
				if r, err = s.api.GetAccessRequest(ctx, r.ID); err != nil {
					return err
				}
			}
			if r.State != access.StateApproved {
				return fmt.Errorf("request %s was %s", r.ID, strings.ToLower(r.State))
			}
			return useRequest(g, cmd.Context(), s.p, r.ID)
		},
	}
	f := cmd.Flags()
	f.StringVar(&roles, "roles", "", "roles to request (comma-separated)")
	f.StringVar(&in.Reason, "reason", "", "why you need access (some roles require it)")
	f.DurationVar(&in.Duration, "duration", 0, "how long the access should last once approved (capped by the roles)")
	f.StringVar(&reviewers, "reviewers", "", "suggested reviewers (comma-separated)")
	f.BoolVar(&nowait, "nowait", false, "do not wait for the decision")
	f.DurationVar(&timeout, "timeout", time.Hour, "how long to wait for the decision")
	return cmd
}

func useRequest(g *globals, ctx context.Context, p *client.Profile, id string) error {
	next, err := client.UseRequest(ctx, p, id)
	if err != nil {
		return err
	}
	textf(g.io.Out, "Request %s approved and in use.\n", id)
	printStatus(g, next)
	return nil
}

func newRequestLsCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{Use: "ls", Short: "List access requests you made or may review", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.requestClient()
			if err != nil {
				return err
			}
			defer c.Close()
			reqs, err := c.ListAccessRequests(cmd.Context())
			if err != nil {
				return err
			}
			return render(g, format, reqs, "ID\tUSER\tROLES\tSTATE\tAPPROVALS\tCREATED\tREASON", func(r *access.Request) []string {
				return []string{r.ID, r.User, strings.Join(r.Roles, ","), r.State,
					fmt.Sprintf("%d/%d", r.Approvals(), r.Thresholds.Approve), r.Created.Local().Format(time.DateTime), r.Reason}
			})
		}}
	cmd.Flags().StringVarP(&format, "output", "o", "text", "output format: text, json or yaml")
	return cmd
}

func newRequestShowCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{Use: "show ID", Short: "Show one access request", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.requestClient()
			if err != nil {
				return err
			}
			defer c.Close()
			r, err := c.GetAccessRequest(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if done, err := printAs(g.io.Out, format, r); done {
				return err
			}
			printRequest(g, r)
			return nil
		}}
	cmd.Flags().StringVarP(&format, "output", "o", "text", "output format: text, json or yaml (durations in nanoseconds)")
	return cmd
}

func newRequestReviewCmd(g *globals) *cobra.Command {
	var approve, deny bool
	var reason string
	cmd := &cobra.Command{Use: "review ID --approve|--deny [--reason TEXT]", Short: "Approve or deny an access request",
		Long: `Approve or deny an access request. Without --approve or --deny, show the
request and the command that decides it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if approve && deny {
				return errors.New("say --approve or --deny, not both")
			}
			c, err := g.requestClient()
			if err != nil {
				return err
			}
			defer c.Close()
			if !approve && !deny {
				r, err := c.GetAccessRequest(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				printRequest(g, r)
				return fmt.Errorf("decide with: warden request review %s --approve (or --deny) [--reason TEXT]", r.ID)
			}
			r, err := c.ReviewAccessRequest(cmd.Context(), args[0], approve, reason)
			if err != nil {
				return err
			}
			textf(g.io.Out, "Reviewed %s: now %s (%d/%d approvals).\n", r.ID, r.State, r.Approvals(), r.Thresholds.Approve)
			return nil
		}}
	cmd.Flags().BoolVar(&approve, "approve", false, "approve the request")
	cmd.Flags().BoolVar(&deny, "deny", false, "deny the request")
	cmd.Flags().StringVar(&reason, "reason", "", "why")
	return cmd
}

func newRequestUseCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "use ID", Short: "Re-issue your certificates with an approved request's roles", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := g.profile()
			if err != nil {
				return err
			}
			if err := p.CheckValid(time.Now()); err != nil {
				return err
			}
			return useRequest(g, cmd.Context(), p, args[0])
		}}
}

func newRequestRevokeCmd(g *globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{Use: "revoke ID", Short: "Revoke an access request: access stops at once, live sessions included", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.requestClient()
			if err != nil {
				return err
			}
			defer c.Close()
			r, err := c.RevokeAccessRequest(cmd.Context(), args[0], reason)
			if err != nil {
				return err
			}
			textf(g.io.Out, "Request %s revoked.\n", r.ID)
			return nil
		}}
	cmd.Flags().StringVar(&reason, "reason", "", "why")
	return cmd
}

// printRequest is the text view of one access request.
func printRequest(g *globals, r *access.Request) {
	w := g.io.Out
	when := func(t time.Time) string { return t.Local().Format(time.RFC1123) }
	textf(w, "Request:   %s\nUser:      %s\nRoles:     %s\nState:     %s\n", r.ID, r.User, strings.Join(r.Roles, ", "), r.State)
	textf(w, "Reason:    %s\n", cmp(r.Reason, "(none)"))
	textf(w, "Duration:  %s once approved (at most %s)\n", humanDuration(r.Duration), humanDuration(r.MaxDuration))
	textf(w, "Approvals: %d of %d needed", r.Approvals(), r.Thresholds.Approve)
	if r.Thresholds.Deny > 0 {
		textf(w, "; %d denial(s) deny it", r.Thresholds.Deny)
	}
	textf(w, "\n")
	if len(r.Reviewers) > 0 {
		textf(w, "Reviewers: %s\n", strings.Join(r.Reviewers, ", "))
	}
	textf(w, "Created:   %s\n", when(r.Created))
	switch {
	case r.State == access.StatePending:
		textf(w, "Expires:   %s unless reviewed (in %s)\n", when(r.PendingExpires), humanDuration(time.Until(r.PendingExpires)))
	case r.State == access.StateApproved && !r.AccessExpires.IsZero():
		textf(w, "Access until: %s (in %s)\n", when(r.AccessExpires), humanDuration(time.Until(r.AccessExpires)))
	}
	if !r.Resolved.IsZero() {
		textf(w, "Resolved:  %s", when(r.Resolved))
		if r.ResolveReason != "" {
			textf(w, " (%s)", r.ResolveReason)
		}
		textf(w, "\n")
	}
	for _, rv := range r.Reviews {
		verdict := "denied"
		if rv.Approve {
			verdict = "approved"
		}
		textf(w, "Review:    %s %s at %s", rv.Author, verdict, when(rv.Time))
		if rv.Reason != "" {
			textf(w, ": %s", rv.Reason)
		}
		textf(w, "\n")
	}
}
