package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/cli"
)

// usbKeyFlags select the USB key on the administrator's desk and where its
// PINs come from (files, or a prompt without echo when absent).
type usbKeyFlags struct {
	module, label, serial string
	pinFile, soPINFile    string
}

func (f *usbKeyFlags) add(cmd *cobra.Command, needSO, needUser bool) {
	fs := cmd.Flags()
	fs.StringVar(&f.module, "module", "", "PKCS#11 module of the USB key (default: hsm.module)")
	fs.StringVar(&f.label, "token-label", "", "label of the USB key")
	fs.StringVar(&f.serial, "token-serial", "", "serial number of the USB key")
	if needUser {
		fs.StringVar(&f.pinFile, "pin-file", "", "file holding the key's user PIN (default: prompt)")
	}
	if needSO {
		fs.StringVar(&f.soPINFile, "so-pin-file", "", "file holding the key's SO PIN (default: prompt)")
	}
}

func (f *usbKeyFlags) selector() (hsm.Selector, error) {
	if f.label == "" && f.serial == "" {
		return hsm.Selector{}, cli.WithCode(cli.ExitUsage, errors.New("name the USB key with --token-label or --token-serial"))
	}
	return hsm.Selector{Label: f.label, Serial: f.serial}, nil
}

func (a *admin) moduleOf(f *usbKeyFlags) string {
	if f.module != "" {
		return f.module
	}
	return a.cfg.HSM.Module
}

// readPIN reads a PIN from the file, or prompts for it without echo (never
// blocking without a terminal).
func readPIN(file, what string) ([]byte, error) {
	src := hsm.PINFromPrompt().WithPrompt(what + ": ")
	if file != "" {
		src = hsm.PINFromFile(file)
	}
	pin, err := src.Read()
	if err != nil {
		return nil, cli.WithCode(cli.ExitConfig, fmt.Errorf("%s: %w", what, err))
	}
	return pin, nil
}

// openUSBKey logs in to the USB key with its user PIN.
func (a *admin) openUSBKey(f *usbKeyFlags) (*hsm.Module, *hsm.Token, error) {
	sel, err := f.selector()
	if err != nil {
		return nil, nil, err
	}
	m, err := hsm.OpenModule(a.moduleOf(f))
	if err != nil {
		return nil, nil, err
	}
	if _, err := m.FindToken(sel); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("USB key: %w (is it plugged in? adminctl tokens list shows what is)", err)
	}
	pin, err := readPIN(f.pinFile, "user PIN of the USB key")
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	defer hsm.Zero(pin)
	tok, err := m.OpenToken(sel, pin, hsm.Options{PoolSize: 2})
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("USB key: %w", err)
	}
	return m, tok, nil
}
