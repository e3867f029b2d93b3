package main

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gridpay/gridpay/internal/cli"
)

// payCommand plays the payer's browser for demos and scripts: it opens a
// merchant's pay link, follows the auto-submitting form to the simulator
// and approves (or declines) the payment, as a person would on the pay page.
func (s *sim) payCommand() *cobra.Command {
	var decline bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "pay <pay-link>",
		Short: "Act as the payer's browser: open a pay link and approve (or --decline) the payment",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return cli.WithCode(cli.ExitUsage, errors.New("give the pay link, as the merchant printed it"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			action := "approve"
			if decline {
				action = "decline"
			}
			outcome, err := payThrough(ctx, args[0], action)
			if err != nil {
				return err
			}
			fmt.Fprintln(s.stdout, outcome)
			return nil
		},
	}
	cmd.Flags().BoolVar(&decline, "decline", false, "decline instead of approving")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long")
	return cmd
}

var (
	formAction = regexp.MustCompile(`<form[^>]*action="([^"]*)"`)
	formInput  = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)
)

// readForm extracts the action and the hidden fields of an auto-submitting
// form page.
func readForm(page []byte) (string, url.Values, error) {
	m := formAction.FindSubmatch(page)
	if m == nil {
		return "", nil, errors.New("the page holds no form")
	}
	fields := url.Values{}
	for _, in := range formInput.FindAllSubmatch(page, -1) {
		fields.Add(html.UnescapeString(string(in[1])), html.UnescapeString(string(in[2])))
	}
	return html.UnescapeString(string(m[1])), fields, nil
}

func fetch(ctx context.Context, method, target string, form url.Values) ([]byte, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, cli.WithCode(cli.ExitUnavailable, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: HTTP %d: %s", method, target, resp.StatusCode, clipBody(b))
	}
	return b, nil
}

func payThrough(ctx context.Context, link, action string) (string, error) {
	page, err := fetch(ctx, http.MethodGet, link, nil)
	if err != nil {
		return "", fmt.Errorf("opening the pay link: %w", err)
	}
	target, fields, err := readForm(page)
	if err != nil {
		return "", fmt.Errorf("the pay link's page: %w", err)
	}
	u, err := url.Parse(target)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("sim_action", action)
	u.RawQuery = q.Encode()
	result, err := fetch(ctx, http.MethodPost, u.String(), fields)
	if err != nil {
		return "", fmt.Errorf("paying: %w", err)
	}
	// The result page sends the browser back to the merchant: follow it.
	if back, fields, err := readForm(result); err == nil {
		_, _ = fetch(ctx, http.MethodPost, back, fields)
		return fmt.Sprintf("%s: %s (respCode %s)", action+"d", fields.Get("orderId"), fields.Get("respCode")), nil
	}
	return action + "d", nil
}

func clipBody(b []byte) string {
	if len(b) > 200 {
		b = b[:200]
	}
	return string(b)
}
