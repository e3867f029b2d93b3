package main

import (
	"strconv"

	"github.com/gridpay/gridpay/platform"
)

// The consumption chart is SVG rendered on the server (web/chart.html): no
// script, nothing fetched. Each month is a bar of three stacked segments,
// valley at the bottom, then flat, then peak; every segment's height is its
// kWh divided by the scale (the top of the plot) times the plot height, so
// heights are proportional to kWh across segments and months.

const (
	chartWidth  = 760
	chartHeight = 320
	chartLeft   = 84
	chartRight  = 16
	chartTop    = 40
	chartBottom = 36
	chartTicks  = 4
	// chartMaxLabels bounds the month labels under the bars.
	chartMaxLabels = 12
)

// Colours of the time-of-use periods, also used by the table's legend.
var chartFill = map[string]string{"peak": "#d9534f", "flat": "#f0ad4e", "valley": "#4a9d5b"}

type chartView struct {
	Width, Height int
	Caption       string
	// Scale is the kWh at the top of the plot, PlotH its height in pixels.
	Scale  int64
	PlotH  float64
	Bars   []chartBar
	Ticks  []chartTick
	Legend []chartLegend
	AxisY  string // y of the baseline
	AxisX1 string
	AxisX2 string
}

type chartBar struct {
	Period    platform.Period
	Segs      []chartSeg
	Label     string
	LabelX    string
	LabelY    string
	ShowLabel bool
}

type chartSeg struct {
	Kind  string // peak, flat, valley
	Fill  string
	X, Y  string
	W, H  string
	KWh   int64
	Title string
}

type chartTick struct {
	Y, X1, X2, LX, LY string
	Label             string
}

type chartLegend struct {
	Kind, Fill, Label string
	X, TX, Y, TY      string
}

type chartLabels struct {
	Peak, Flat, Valley, Caption string
}

func px(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) }

// niceScale is the smallest round number not below v whose quarters, the
// grid lines, are round too: 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 × 10^n
// (1, 2, 4, 5, 8 or 10 below 10 kWh).
func niceScale(v int64) int64 {
	if v <= 1 {
		return 1
	}
	if v < 10 {
		for _, m := range []int64{2, 4, 5, 8} {
			if m >= v {
				return m
			}
		}
		return 10
	}
	p := int64(1) // the power of ten with p ≤ v < 10p
	for p*10 <= v {
		p *= 10
	}
	for _, tenths := range []int64{10, 12, 15, 20, 25, 30, 40, 50, 60, 80} {
		if s := tenths * p / 10; s >= v {
			return s
		}
	}
	return 10 * p
}

func newChart(months []monthUse, l chartLabels) chartView {
	plotW := float64(chartWidth - chartLeft - chartRight)
	plotH := float64(chartHeight - chartTop - chartBottom)
	base := float64(chartHeight - chartBottom)
	var top int64
	for _, m := range months {
		top = max(top, m.Peak+m.Flat+m.Valley)
	}
	c := chartView{Width: chartWidth, Height: chartHeight, Caption: l.Caption, Scale: niceScale(top), PlotH: plotH,
		AxisY: px(base), AxisX1: px(chartLeft), AxisX2: px(chartWidth - chartRight)}
	height := func(kwh int64) float64 { return float64(kwh) / float64(c.Scale) * plotH }

	for i := 0; i <= chartTicks; i++ {
		v := c.Scale * int64(i) / chartTicks
		y := base - height(v)
		c.Ticks = append(c.Ticks, chartTick{Y: px(y), X1: px(chartLeft), X2: px(chartWidth - chartRight),
			LX: px(chartLeft - 6), LY: px(y + 4), Label: groupDigits(v)})
	}

	n := len(months)
	if n == 0 {
		return c
	}
	slot := plotW / float64(n)
	barW := min(slot*0.62, 48)
	every := (n + chartMaxLabels - 1) / chartMaxLabels
	for i, m := range months {
		x := chartLeft + float64(i)*slot + (slot-barW)/2
		b := chartBar{Period: m.Period, Label: string(m.Period), LabelX: px(x + barW/2), LabelY: px(base + 16), ShowLabel: i%every == 0}
		y := base
		for _, seg := range []struct {
			kind  string
			kwh   int64
			label string
		}{{"valley", m.Valley, l.Valley}, {"flat", m.Flat, l.Flat}, {"peak", m.Peak, l.Peak}} {
			h := height(seg.kwh)
			y -= h
			b.Segs = append(b.Segs, chartSeg{Kind: seg.kind, Fill: chartFill[seg.kind], X: px(x), Y: px(y), W: px(barW), H: px(h),
				KWh: seg.kwh, Title: string(m.Period) + " " + seg.label + " " + groupDigits(seg.kwh) + " kWh"})
		}
		c.Bars = append(c.Bars, b)
	}
	for i, lg := range []struct{ kind, label string }{{"peak", l.Peak}, {"flat", l.Flat}, {"valley", l.Valley}} {
		x := float64(chartLeft + i*90)
		c.Legend = append(c.Legend, chartLegend{Kind: lg.kind, Fill: chartFill[lg.kind], Label: lg.label,
			X: px(x), Y: px(12), TX: px(x + 18), TY: px(23)})
	}
	return c
}
