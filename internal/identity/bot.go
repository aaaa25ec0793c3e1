package identity

import (
	"fmt"
	"strings"
)

// TypeBot marks the user record of a bot: a machine user that never has a
// password or MFA device, joins with a token and renews its own
// certificates.
const TypeBot = "bot"

// BotUserPrefix starts the user name of every bot (bot-NAME), and no
// person's: `warden lock --user bot-deploy` and `--bot deploy` are one.
const BotUserPrefix = "bot-"

// BotUser is the user name of bot name.
func BotUser(name string) string { return BotUserPrefix + name }

// IsBotUserName reports whether a user name is in the bots' namespace.
func IsBotUserName(user string) bool { return strings.HasPrefix(user, BotUserPrefix) }

// ValidateBotName checks a bot's name (its user name is bot-NAME).
func ValidateBotName(name string) error {
	if name == "" {
		return fmt.Errorf("a bot needs a name")
	}
	if err := ValidateUsername(BotUser(name)); err != nil {
		return fmt.Errorf("invalid bot name %q: %w", name, err)
	}
	return nil
}
