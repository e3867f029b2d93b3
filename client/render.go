package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/platform"
)

// table prints aligned columns; numbers and amounts are right-aligned.
type table struct {
	head   []string
	right  []bool
	rows   [][]string
	noHead bool
}

func newTable(cols ...string) *table {
	t := &table{}
	for _, c := range cols {
		// A leading '>' marks a right-aligned column.
		r := strings.HasPrefix(c, ">")
		t.head = append(t.head, strings.TrimPrefix(c, ">"))
		t.right = append(t.right, r)
	}
	return t
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) {
	widths := make([]int, len(t.head))
	for _, r := range append([][]string{t.head}, t.rows...) {
		for i, c := range r {
			widths[i] = max(widths[i], displayWidth(c))
		}
	}
	line := func(r []string) {
		var b strings.Builder
		for i, c := range r {
			pad := strings.Repeat(" ", widths[i]-displayWidth(c))
			last := i == len(r)-1
			switch {
			case t.right[i]:
				b.WriteString(pad + c)
			case last:
				b.WriteString(c)
			default:
				b.WriteString(c + pad)
			}
			if !last {
				b.WriteString("  ")
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	if !t.noHead {
		line(t.head)
	}
	for _, r := range t.rows {
		line(r)
	}
}

// displayWidth counts East Asian wide characters (customer names and
// addresses are often Chinese) as two columns.
func displayWidth(s string) int {
	n := 0
	for _, r := range s {
		switch {
		case r < 0x1100:
			n++
		case unicode.Is(unicode.Han, r), unicode.Is(unicode.Hangul, r), unicode.Is(unicode.Hiragana, r),
			unicode.Is(unicode.Katakana, r), r >= 0x3000 && r <= 0x303F, r >= 0xFF00 && r <= 0xFF60:
			n += 2
		default:
			n++
		}
	}
	return n
}

// fields prints label/value pairs with the values aligned.
func fields(w io.Writer, indent string, kv ...[2]string) {
	width := 0
	for _, p := range kv {
		width = max(width, displayWidth(p[0]))
	}
	for _, p := range kv {
		if p[1] == "" {
			continue
		}
		fmt.Fprintf(w, "%s%s%s  %s\n", indent, p[0], strings.Repeat(" ", width-displayWidth(p[0])), p[1])
	}
}

func kwh(n int64) string { return groupDigits(n) + " kWh" }

// groupDigits writes 1234567 as 1,234,567.
func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func customerType(t platform.CustomerType) string {
	switch t {
	case platform.LargeIndustry:
		return "large industry"
	case platform.GeneralCommercial:
		return "general commercial"
	case platform.Agricultural:
		return "agricultural"
	}
	return strings.ReplaceAll(string(t), "_", " ")
}

func renderAlerts(w io.Writer, alerts []api.Alert) {
	if len(alerts) == 0 {
		fmt.Fprintln(w, "No arrears alerts.")
		return
	}
	fmt.Fprintln(w, "Arrears alerts:")
	t := newTable("LEVEL", "BILL", "MESSAGE")
	for _, al := range alerts {
		bill := al.BillID
		if bill == "" {
			bill = "-"
		}
		t.add(strings.ToUpper(string(al.Level)), bill, al.Message)
	}
	t.write(indented{w, "  "})
}

// indented prefixes every line written through it.
type indented struct {
	w      io.Writer
	prefix string
}

func (i indented) Write(p []byte) (int, error) {
	lines := strings.SplitAfter(string(p), "\n")
	for _, l := range lines {
		if l == "" {
			continue
		}
		if _, err := io.WriteString(i.w, i.prefix+l); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func renderLogin(w io.Writer, o loginOutput) {
	fmt.Fprintf(w, "Logged in with USB key %q (serial %s).\n\n", o.Token.Label, o.Token.Serial)
	c := o.Customer
	fields(w, "  ",
		[2]string{"Customer", c.Name},
		[2]string{"Customer no.", c.ID},
		[2]string{"Type", customerType(c.Type)},
		[2]string{"Voltage grade", c.VoltageGrade},
		[2]string{"Certificate", "valid until " + shanghaiTime(o.Certificate.NotAfter)},
	)
	fmt.Fprintln(w)
	renderAlerts(w, o.Alerts)
}

// prepaidBalance shows a prepaid account's balance ("" without one).
func prepaidBalance(p *platform.PrepaidAccount) string {
	if p == nil {
		return ""
	}
	return p.Balance.Display() + " (client load moves it onto the USB key's wallet)"
}

func renderInfo(w io.Writer, o infoOutput) {
	c := o.Customer
	capacity := ""
	if c.ContractCapacityKVA > 0 {
		capacity = groupDigits(c.ContractCapacityKVA) + " kVA"
	}
	contact := strings.TrimSpace(strings.Join([]string{c.ContactName, c.ContactPhone}, "  "))
	fields(w, "",
		[2]string{"Customer", c.Name},
		[2]string{"Customer no.", c.ID},
		[2]string{"Account", c.AccountNumber},
		[2]string{"Type", customerType(c.Type)},
		[2]string{"Voltage grade", c.VoltageGrade},
		[2]string{"Contract capacity", capacity},
		[2]string{"Contact", contact},
		[2]string{"Address", c.Address},
		[2]string{"Prepaid account", prepaidBalance(o.Prepaid)},
	)
	fmt.Fprintln(w)
	if len(o.MeteringPoints) == 0 {
		fmt.Fprintln(w, "No metering points.")
		return
	}
	fmt.Fprintln(w, "Metering points:")
	t := newTable("ID", "METER", "LOCATION", ">MULTIPLIER")
	for _, m := range o.MeteringPoints {
		t.add(m.ID, m.MeterNumber, m.Location, groupDigits(m.Multiplier))
	}
	t.write(indented{w, "  "})
}

// barWidth is the length of the longest bar of the consumption chart.
const barWidth = 30

func renderConsumption(w io.Writer, l api.ConsumptionList) {
	if len(l.Items) == 0 {
		fmt.Fprintf(w, "No consumption recorded from %s to %s.\n", l.From, l.To)
		return
	}
	// One row per month, summed over the metering points, in month order.
	type month struct{ peak, flat, valley, total int64 }
	var order []platform.Period
	byMonth := map[platform.Period]*month{}
	points := map[string]bool{}
	for _, c := range l.Items {
		m := byMonth[c.Period]
		if m == nil {
			m = &month{}
			byMonth[c.Period] = m
			order = append(order, c.Period)
		}
		m.peak += c.PeakKWh
		m.flat += c.FlatKWh
		m.valley += c.ValleyKWh
		m.total += c.TotalKWh
		points[c.MeteringPointID] = true
	}
	sortPeriods(order)
	var top int64
	var sum month
	for _, p := range order {
		m := byMonth[p]
		top = max(top, m.total)
		sum.peak += m.peak
		sum.flat += m.flat
		sum.valley += m.valley
		sum.total += m.total
	}
	fmt.Fprintf(w, "Consumption %s to %s, kWh, %d metering point(s)\n\n", order[0], order[len(order)-1], len(points))
	t := newTable("MONTH", ">PEAK", ">FLAT", ">VALLEY", ">TOTAL", "")
	for _, p := range order {
		m := byMonth[p]
		t.add(string(p), groupDigits(m.peak), groupDigits(m.flat), groupDigits(m.valley), groupDigits(m.total), bar(m.total, top))
	}
	t.add("total", groupDigits(sum.peak), groupDigits(sum.flat), groupDigits(sum.valley), groupDigits(sum.total), "")
	t.write(w)
}

func bar(v, top int64) string {
	if top <= 0 || v <= 0 {
		return ""
	}
	n := int((v*barWidth + top - 1) / top) // round up: any use shows
	return strings.Repeat("#", n)
}

func sortPeriods(ps []platform.Period) {
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && ps[j] < ps[j-1]; j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}

func renderBills(w io.Writer, l api.BillList, all bool) {
	if len(l.Items) == 0 {
		if all {
			fmt.Fprintln(w, "No bills.")
		} else {
			fmt.Fprintln(w, "No unpaid bills.")
		}
		return
	}
	t := newTable("BILL", "PERIOD", "DUE DATE", ">ENERGY", ">AMOUNT DUE", "STATUS")
	var due money.Fen
	for _, b := range l.Items {
		t.add(b.ID, string(b.Period), string(b.DueDate), kwh(b.KWh), b.AmountDue.Display(), string(b.Status))
		due += b.AmountDue
	}
	t.write(w)
	fmt.Fprintf(w, "\n%d bill(s), %s due in total\n", len(l.Items), due.Display())
}

func renderBill(w io.Writer, b platform.Bill) {
	fields(w, "",
		[2]string{"Bill", b.ID},
		[2]string{"Period", string(b.Period)},
		[2]string{"Issued", string(b.IssuedOn)},
		[2]string{"Due date", string(b.DueDate)},
		[2]string{"Status", string(b.Status)},
		[2]string{"Energy", kwh(b.KWh)},
	)
	fmt.Fprintln(w)
	t := newTable("", ">")
	t.noHead = true
	t.add("Energy charge", b.EnergyCharge.Display())
	t.add("Basic charge", b.BasicCharge.Display())
	t.add("Late fee", b.LateFee.Display())
	paid := b.Paid.Display()
	if b.Paid > 0 {
		paid = (-b.Paid).Display()
	}
	t.add("Paid", paid)
	t.add("Amount due", b.AmountDue.Display())
	t.write(w)
}

func renderArrears(w io.Writer, s api.ArrearsSummary) {
	if s.OverdueBills == 0 && s.Total == 0 {
		fmt.Fprintln(w, "No arrears.")
	} else {
		fields(w, "",
			[2]string{"Arrears", s.Total.Display()},
			[2]string{"Late fees", s.LateFees.Display()},
			[2]string{"Overdue bills", strconv.Itoa(s.OverdueBills)},
			[2]string{"Oldest due date", string(s.OldestDueDate)},
		)
		if len(s.Bills) > 0 {
			fmt.Fprintln(w)
			t := newTable("BILL", "PERIOD", "DUE DATE", ">LATE FEE", ">AMOUNT DUE")
			for _, b := range s.Bills {
				t.add(b.ID, string(b.Period), string(b.DueDate), b.LateFee.Display(), b.AmountDue.Display())
			}
			t.write(w)
		}
	}
	fmt.Fprintln(w)
	renderAlerts(w, s.Alerts)
}

func renderHistory(w io.Writer, h history) {
	renderPayments(w, h.PaymentList)
	fmt.Fprintln(w)
	if len(h.Loads) == 0 {
		fmt.Fprintln(w, "No loads onto a USB key in this range.")
		return
	}
	fmt.Fprintln(w, "Loads onto USB keys (圈存):")
	t := newTable("STARTED", "LOAD", ">AMOUNT", "STATUS", "NOTE")
	for _, l := range h.Loads {
		note := l.Reason
		if l.ConfirmedBy != "" {
			note = "confirmed by " + l.ConfirmedBy
		}
		t.add(l.Created.In(platform.Shanghai).Format("2006-01-02 15:04"), l.LoadID, l.Amount.Display(), l.Status, note)
	}
	t.write(w)
}

func renderPayments(w io.Writer, l api.PaymentList) {
	if len(l.Online) > 0 {
		fmt.Fprintln(w, "Online payments (GridPay, UnionPay):")
		t := newTable("STARTED", "KEY", ">AMOUNT", "STATUS", "PAYS", "NOTE")
		for _, p := range l.Online {
			pays := "prepaid account"
			if len(p.BillIDs) > 0 {
				pays = strings.Join(p.BillIDs, ", ")
			}
			started := ""
			if !p.Deadline.IsZero() {
				started = p.Deadline.In(platform.Shanghai).Format("2006-01-02")
			}
			t.add(started, p.Key, p.Amount.Display(), strings.ReplaceAll(p.Status, "_", " "), pays, p.Reason)
		}
		t.write(w)
		fmt.Fprintln(w)
	}
	if len(l.Items) == 0 {
		fmt.Fprintln(w, "No payments in this range.")
		return
	}
	if len(l.Online) > 0 {
		fmt.Fprintln(w, "Payments received by the power company:")
	}
	t := newTable("PAID ON", "REFERENCE", ">AMOUNT", "CHANNEL", "STATUS", "APPLIED TO")
	var total money.Fen
	for _, p := range l.Items {
		applied := "prepaid account"
		if !p.Prepaid {
			ids := make([]string, len(p.Allocations))
			for i, al := range p.Allocations {
				ids[i] = al.BillID
			}
			applied = strings.Join(ids, ", ")
		}
		t.add(string(platform.DateOf(p.PaidAt)), p.Reference, p.Amount.Display(), p.Channel, string(p.Status), applied)
		if p.Status != platform.PaymentReversed {
			total += p.Amount
		}
	}
	t.write(w)
	fmt.Fprintf(w, "\n%d payment(s), %s received (reversed payments not counted)\n", len(l.Items), total.Display())
}
