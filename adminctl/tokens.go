package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gridpay/gridpay/hsm"
)

func (a *admin) tokensCommand() *cobra.Command {
	var module string
	cmd := &cobra.Command{Use: "tokens", Aliases: []string{"token"}, Short: "PKCS#11 tokens: USB keys and the HSM", Args: noArgs}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the tokens visible through a PKCS#11 module (no login needed)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if module == "" {
				module = a.cfg.HSM.Module
			}
			m, err := hsm.OpenModule(module)
			if err != nil {
				return err
			}
			defer m.Close()
			toks, err := m.Tokens()
			if err != nil {
				return err
			}
			type row struct {
				Slot         uint     `json:"slot"`
				Label        string   `json:"label"`
				Serial       string   `json:"serial"`
				Manufacturer string   `json:"manufacturer"`
				Model        string   `json:"model"`
				Flags        []string `json:"flags"`
			}
			rows := make([]row, 0, len(toks))
			for _, t := range toks {
				rows = append(rows, row{Slot: t.Slot, Label: t.Label, Serial: t.Serial, Manufacturer: t.Manufacturer, Model: t.Model, Flags: tokenFlags(t)})
			}
			return a.out.Print(rows, func(w io.Writer) {
				if len(rows) == 0 {
					fmt.Fprintf(w, "no token present (module %s)\n", module)
				}
				for _, r := range rows {
					fmt.Fprintf(w, "slot %-10d %-32q serial %-16s %s %s  [%s]\n", r.Slot, r.Label, r.Serial, r.Manufacturer, r.Model, strings.Join(r.Flags, ", "))
				}
			})
		},
	}
	list.Flags().StringVar(&module, "module", "", "PKCS#11 module path (default: hsm.module)")
	cmd.AddCommand(list, a.tokenInitCommand())
	return cmd
}

// tokenFlags names the flags an operator cares about.
func tokenFlags(t hsm.TokenInfo) []string {
	var f []string
	add := func(on bool, name string) {
		if on {
			f = append(f, name)
		}
	}
	if !t.Initialized {
		return []string{"not initialized"}
	}
	add(!t.UserPINInitialized, "user PIN not set")
	add(t.UserPINCountLow, "user PIN count low")
	add(t.UserPINFinalTry, "user PIN final try")
	add(t.UserPINLocked, "user PIN LOCKED")
	add(t.UserPINToBeChanged, "user PIN to be changed")
	add(t.SOPINLocked, "SO PIN LOCKED")
	add(t.WriteProtected, "write protected")
	return f
}
