package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/gridpay/gridpay/platform"
)

// The e-bill is a one-page PDF written here, without external tools or
// embedded fonts:
//
//   - Latin text uses the standard Helvetica fonts (every viewer has them)
//     in WinAnsiEncoding, which covers ASCII and "¥".
//   - Chinese text uses STSong-Light through the predefined CMap
//     UniGB-UCS2-H: a Type0 font whose characters are UCS-2 codes, one of
//     the CJK fonts PDF viewers supply themselves (Acrobat's Asian font
//     support, PDFium in Chromium, pdf.js, poppler with poppler-data). It
//     is not embedded, so the file stays a few kilobytes; a viewer without
//     CJK support shows blanks or substitutes for those characters only.
//     Characters outside the Basic Multilingual Plane print as "?".
//
// The file is PDF 1.4: catalog, one page, an uncompressed content stream,
// the fonts, an info dictionary, a cross-reference table and a trailer.

const (
	pdfPageW = 595.28 // A4 in points
	pdfPageH = 841.89
	pdfLeft  = 56.0
	pdfRight = pdfPageW - 56.0
)

// pdfCanvas collects the drawing operators of the page.
type pdfCanvas struct {
	b bytes.Buffer
}

// isWinAnsi says Helvetica in WinAnsiEncoding draws r (ASCII, and Latin-1
// from U+00A0, where WinAnsi and Latin-1 agree).
func isWinAnsi(r rune) bool { return r >= 0x20 && r <= 0x7e || r >= 0xa0 && r <= 0xff }

// Glyph widths of Helvetica and Helvetica-Bold for ASCII 32–126, in
// thousandths of the font size (the fonts' AFM metrics).
var helveticaWidths = [95]int{
	278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,
	556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
	1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
	667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
	333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
	556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
}

var helveticaBoldWidths = [95]int{
	278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278,
	556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611,
	975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778,
	667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556,
	333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611,
	611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584,
}

func runeWidth(r rune, size float64, bold bool) float64 {
	switch {
	case r >= 0x20 && r <= 0x7e && bold:
		return float64(helveticaBoldWidths[r-0x20]) * size / 1000
	case r >= 0x20 && r <= 0x7e:
		return float64(helveticaWidths[r-0x20]) * size / 1000
	case isWinAnsi(r):
		return 556 * size / 1000 // ¥ and the other Latin-1 letters are about a digit wide
	}
	return size // CJK: full width
}

func textWidth(s string, size float64, bold bool) float64 {
	var w float64
	for _, r := range s {
		w += runeWidth(r, size, bold)
	}
	return w
}

// text draws s from (x, y), switching between Helvetica for Latin runs and
// STSong-Light for the rest.
func (c *pdfCanvas) text(x, y, size float64, bold bool, s string) {
	latin := "F1"
	if bold {
		latin = "F2"
	}
	rs := []rune(s)
	for i := 0; i < len(rs); {
		j := i
		win := isWinAnsi(rs[i]) || rs[i] > 0xffff
		for j < len(rs) && (isWinAnsi(rs[j]) || rs[j] > 0xffff) == win {
			j++
		}
		run := rs[i:j]
		if win {
			fmt.Fprintf(&c.b, "BT /%s %s Tf %s %s Td %s Tj ET\n", latin, num(size), num(x), num(y), pdfLatin(run))
		} else {
			fmt.Fprintf(&c.b, "BT /F3 %s Tf %s %s Td %s Tj ET\n", num(size), num(x), num(y), pdfUCS2(run))
		}
		for _, r := range run {
			x += runeWidth(r, size, bold)
		}
		i = j
	}
}

// textRight draws s ending at x.
func (c *pdfCanvas) textRight(x, y, size float64, bold bool, s string) {
	c.text(x-textWidth(s, size, bold), y, size, bold, s)
}

func (c *pdfCanvas) color(r, g, b float64) {
	fmt.Fprintf(&c.b, "%s %s %s rg %s %s %s RG\n", num(r), num(g), num(b), num(r), num(g), num(b))
}

func (c *pdfCanvas) line(x1, y1, x2, y2, width float64) {
	fmt.Fprintf(&c.b, "%s w %s %s m %s %s l S\n", num(width), num(x1), num(y1), num(x2), num(y2))
}

func (c *pdfCanvas) fillRect(x, y, w, h float64) {
	fmt.Fprintf(&c.b, "%s %s %s %s re f\n", num(x), num(y), num(w), num(h))
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// pdfLatin is a literal string in WinAnsiEncoding; bytes above ASCII are
// written as octal escapes so the file stays 7-bit text.
func pdfLatin(rs []rune) string {
	var b strings.Builder
	b.WriteByte('(')
	for _, r := range rs {
		switch {
		case r > 0xffff:
			b.WriteByte('?')
		case r == '(' || r == ')' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r >= 0x80:
			fmt.Fprintf(&b, "\\%03o", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(')')
	return b.String()
}

// pdfUCS2 is a hex string of UCS-2 codes for UniGB-UCS2-H.
func pdfUCS2(rs []rune) string {
	var b strings.Builder
	b.WriteByte('<')
	for _, r := range rs {
		fmt.Fprintf(&b, "%04X", r)
	}
	b.WriteByte('>')
	return b.String()
}

// pdfTextString is a text string (document information) in UTF-16BE with
// its byte order mark.
func pdfTextString(s string) string {
	var b strings.Builder
	b.WriteString("<FEFF")
	for _, u := range utf16.Encode([]rune(s)) {
		fmt.Fprintf(&b, "%04X", u)
	}
	b.WriteByte('>')
	return b.String()
}

// wrapText splits s into lines no wider than width.
func wrapText(s string, size, width float64) []string {
	var lines []string
	var cur []rune
	var w float64
	for _, r := range s {
		rw := runeWidth(r, size, false)
		if w+rw > width && len(cur) > 0 {
			lines = append(lines, string(cur))
			cur, w = nil, 0
		}
		cur = append(cur, r)
		w += rw
	}
	if len(cur) > 0 {
		lines = append(lines, string(cur))
	}
	return lines
}

// pdfDocument wraps one page's content stream into a complete file.
func pdfDocument(content []byte, title string, created time.Time) []byte {
	var b bytes.Buffer
	var offsets []int
	obj := func(body string) {
		offsets = append(offsets, b.Len())
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", len(offsets), body)
	}
	// The second line's high bytes mark the file as binary for transfer
	// programs, as the specification recommends.
	b.WriteString("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
	obj("<< /Type /Catalog /Pages 2 0 R >>")
	obj("<< /Type /Pages /Kids [3 0 R] /Count 1 >>")
	obj(fmt.Sprintf("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %s %s] /Resources << /Font << /F1 5 0 R /F2 6 0 R /F3 7 0 R >> >> /Contents 4 0 R >>",
		num(pdfPageW), num(pdfPageH)))
	obj(fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(content), content))
	obj("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
	obj("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>")
	obj("<< /Type /Font /Subtype /Type0 /BaseFont /STSong-Light /Encoding /UniGB-UCS2-H /DescendantFonts [8 0 R] >>")
	obj("<< /Type /Font /Subtype /CIDFontType0 /BaseFont /STSong-Light /CIDSystemInfo << /Registry (Adobe) /Ordering (GB1) /Supplement 2 >> /FontDescriptor 9 0 R /DW 1000 >>")
	obj("<< /Type /FontDescriptor /FontName /STSong-Light /Flags 6 /FontBBox [-25 -254 1000 880] /ItalicAngle 0 /Ascent 880 /Descent -120 /CapHeight 880 /StemV 93 >>")
	obj(fmt.Sprintf("<< /Title %s /Producer (GridPay client) /CreationDate (%s) >>", pdfTextString(title), pdfDate(created)))

	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(offsets)+1)
	for _, off := range offsets {
		fmt.Fprintf(&b, "%010d 00000 n \n", off)
	}
	id := sha256.Sum256(content)
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R /ID [<%X> <%X>] >>\nstartxref\n%d\n%%%%EOF\n",
		len(offsets)+1, len(offsets), id[:16], id[:16], xref)
	return b.Bytes()
}

// pdfDate is a PDF date in Asia/Shanghai time.
func pdfDate(t time.Time) string {
	return t.In(platform.Shanghai).Format("D:20060102150405") + "+08'00'"
}

// billPDF is the e-bill of b for customer c, labelled in lang.
func billPDF(lang string, b platform.Bill, c platform.Customer, now time.Time) []byte {
	t := func(key string) string { return tr(lang, key) }
	var cv pdfCanvas

	// Title band.
	cv.color(0.09, 0.27, 0.46)
	cv.fillRect(0, pdfPageH-96, pdfPageW, 96)
	cv.color(1, 1, 1)
	cv.text(pdfLeft, pdfPageH-52, 22, true, "GridPay")
	cv.text(pdfLeft+textWidth("GridPay", 22, true)+12, pdfPageH-52, 18, false, t("bill.pdf.title"))
	cv.textRight(pdfRight, pdfPageH-50, 12, true, b.ID)
	cv.textRight(pdfRight, pdfPageH-68, 10, false, string(b.Period))

	y := pdfPageH - 132
	section := func(title string) {
		cv.color(0.09, 0.27, 0.46)
		cv.text(pdfLeft, y, 12, true, title)
		y -= 6
		cv.line(pdfLeft, y, pdfRight, y, 0.8)
		y -= 18
		cv.color(0, 0, 0)
	}
	row := func(label, value string) {
		if value == "" {
			return
		}
		cv.color(0.35, 0.38, 0.42)
		cv.text(pdfLeft, y, 10, false, label)
		cv.color(0, 0, 0)
		for i, l := range wrapText(value, 10.5, pdfRight-pdfLeft-130) {
			if i > 0 {
				y -= 15
			}
			cv.text(pdfLeft+130, y, 10.5, false, l)
		}
		y -= 18
	}

	section(t("pdf.customer"))
	row(t("ov.name"), c.Name)
	row(t("ov.customer"), c.ID)
	row(t("ov.account"), c.AccountNumber)
	row(t("ov.type"), uiCustomerType(lang, c.Type))
	row(t("ov.voltage"), c.VoltageGrade)
	row(t("ov.address"), c.Address)

	y -= 10
	section(t("pdf.bill"))
	row(t("bills.id"), b.ID)
	row(t("bills.period"), string(b.Period))
	row(t("bills.issued"), string(b.IssuedOn))
	row(t("bills.duedate"), string(b.DueDate))
	row(t("bills.status"), uiBillStatus(lang, b.Status))
	row(t("bills.kwh"), groupDigits(b.KWh))

	y -= 10
	section(t("bill.charges"))
	amount := func(label, value string, bold bool, size float64) {
		cv.text(pdfLeft, y, size, bold, label)
		cv.textRight(pdfRight, y, size, bold, value)
		y -= 8
		cv.color(0.8, 0.82, 0.85)
		cv.line(pdfLeft, y, pdfRight, y, 0.4)
		cv.color(0, 0, 0)
		y -= 16
	}
	amount(t("bill.energy"), b.EnergyCharge.Display(), false, 10.5)
	amount(t("bill.basic"), b.BasicCharge.Display(), false, 10.5)
	amount(t("bill.late"), b.LateFee.Display(), false, 10.5)
	amount(t("bill.paid"), (-b.Paid).Display(), false, 10.5)
	y -= 4
	amount(t("bills.due"), b.AmountDue.Display(), true, 14)

	cv.color(0.35, 0.38, 0.42)
	y = 84
	for _, l := range wrapText(t("bill.pdf.note"), 9, pdfRight-pdfLeft) {
		cv.text(pdfLeft, y, 9, false, l)
		y -= 13
	}
	cv.text(pdfLeft, y, 9, false, t("bill.pdf.made")+": "+uiInstant(now)+" (Asia/Shanghai)")

	title := "GridPay " + t("bill.pdf.title") + " " + b.ID
	return pdfDocument(cv.b.Bytes(), title, now)
}
