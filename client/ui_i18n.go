package main

import (
	"fmt"
	"net/http"
	"time"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/platform"
)

// The web UI speaks Simplified Chinese by default and English on request
// (the language cookie, set by the switch in the page header).
const (
	langZH = "zh-CN"
	langEN = "en"
	// langCookie remembers the choice; it is no secret, and shared by every
	// UI on this machine.
	langCookie = "gridpay_lang"
)

// langOf is the language of a request.
func langOf(r *http.Request) string {
	if c, err := r.Cookie(langCookie); err == nil && c.Value == langEN {
		return langEN
	}
	return langZH
}

// msg is one text in both languages. Texts with %-verbs are used through
// tf.
type msg struct{ zh, en string }

// messages is every text the UI shows apart from data. TestMessages checks
// that the templates use no key missing here and that both languages are
// filled in.
var messages = map[string]msg{
	"app.name":     {"电费网上缴费客户端", "electricity account"},
	"app.local":    {"本窗口由本机的 GridPay 客户端提供，PIN 和 USB 密钥不离开本机。", "This window is served by the GridPay client on this computer; the PIN and the USB key never leave it."},
	"lang.switch":  {"English", "中文"},
	"nav.overview": {"概览", "Overview"},
	"nav.use":      {"用电量", "Consumption"},
	"nav.bills":    {"账单", "Bills"},
	"nav.history":  {"缴费记录", "History"},
	"nav.pay":      {"缴费", "Pay"},
	"nav.wallet":   {"电子钱包", "Wallet"},
	"nav.soon.wal": {"随圈存功能上线", "coming with loads"},
	"nav.logout":   {"退出并锁定密钥", "Log out and lock the key"},

	"login.title":         {"插入 USB 密钥并输入 PIN", "Insert your USB key and enter its PIN"},
	"login.key":           {"USB 密钥", "USB key"},
	"login.serial":        {"序列号", "serial"},
	"login.pin":           {"PIN 码", "PIN"},
	"login.unlock":        {"登录", "Log in"},
	"login.final":         {"我确认 PIN 正确：再错一次密钥将被锁定", "I am sure of the PIN: one more wrong PIN locks the key"},
	"login.final.need":    {"密钥只剩最后一次尝试机会。请勾选确认后再登录。", "The key has one try left. Tick the confirmation to use it."},
	"login.empty":         {"请输入 PIN。", "Enter the PIN."},
	"login.busy":          {"另一次登录正在进行，请稍候。", "Another login is in progress; wait a moment."},
	"login.state.absent":  {"未检测到 USB 密钥，请插入。", "No USB key found: insert your USB key."},
	"login.state.ready":   {"已检测到 USB 密钥，请输入 PIN。", "USB key found: enter its PIN."},
	"login.state.locked":  {"USB 密钥已锁定。", "The USB key is locked."},
	"login.state.unlock":  {"已登录，USB 密钥已解锁。", "Logged in: the USB key is unlocked."},
	"login.state.error":   {"无法使用 USB 密钥。", "The USB key cannot be used."},
	"login.tries":         {"此前已输错 %d 次 PIN，锁定前还可尝试 %d 次。", "%d wrong PIN(s) entered before; %d tries left before the key is locked."},
	"login.wrong":         {"PIN 错误：锁定前还可尝试 %d 次。", "Wrong PIN: %d tries left before the key is locked."},
	"login.wrong.last":    {"PIN 错误：只剩最后一次尝试机会，再错一次密钥将被锁定。", "Wrong PIN: one try left; one more wrong PIN locks the key."},
	"login.locked":        {"连续输错 %d 次 PIN，密钥已被锁定。请联系供电公司重置。", "The key is locked after %d wrong PINs; ask the power company to reset it."},
	"login.tokenlocked":   {"USB 密钥因多次输错 PIN 已自行锁定。请联系供电公司重置。", "The USB key has locked its PIN itself after too many wrong PINs; ask the power company to reset it."},
	"login.finaltry":      {"密钥报告只剩最后一次尝试机会。", "The key reports that one try is left."},
	"login.countlow":      {"此前在这把密钥上输错过 PIN。", "A wrong PIN was entered on this key before."},
	"login.holder":        {"证书持有人", "Certificate holder"},
	"login.expires":       {"证书有效期至", "Certificate valid until"},
	"login.continue":      {"进入概览", "Go to the overview"},
	"login.poll":          {"每 2 秒自动检测 USB 密钥。", "The USB key is checked every 2 seconds."},
	"login.refresh":       {"刷新", "Refresh"},
	"end.logout":          {"已退出，USB 密钥已锁定。", "Logged out: the USB key is locked again."},
	"end.idle":            {"闲置超过 %s，USB 密钥已自动锁定。请重新输入 PIN。", "The USB key was locked again after %s without use. Enter the PIN again."},
	"end.removed":         {"USB 密钥已拔出，会话已结束。", "The USB key was removed; the session ended."},
	"end.refused":         {"网关拒绝了这把 USB 密钥，会话已结束。", "The gateway refused this USB key; the session ended."},
	"forbidden.title":     {"禁止访问", "Forbidden"},
	"forbidden.text":      {"请使用 “client ui” 命令在终端中打印的链接打开本窗口。", "Open this window with the link printed by “client ui” in your terminal."},
	"notfound.title":      {"页面不存在", "Page not found"},
	"launch.title":        {"正在打开", "Opening"},
	"launch.continue":     {"继续", "Continue"},
	"error.title":         {"出错了", "Something went wrong"},
	"error.retry":         {"重试", "Try again"},
	"error.detail":        {"详细信息", "Details"},
	"err.no_certificate":  {"网关没有收到客户端证书。", "The gateway received no client certificate."},
	"err.unknown_ca":      {"这把 USB 密钥上的证书不是本系统签发的。", "The certificate on this USB key was not issued by GridPay."},
	"err.cert_expired":    {"USB 密钥上的证书已过期，请联系供电公司更换。", "The certificate on the USB key has expired; ask the power company for a new one."},
	"err.cert_revoked":    {"USB 密钥上的证书已被吊销（密钥挂失、更换或退还）。", "The certificate on the USB key has been revoked (key lost, replaced or returned)."},
	"err.cert_invalid":    {"USB 密钥上的证书不能用于登录。", "The certificate on the USB key cannot be used to log in."},
	"err.not_bound":       {"这把 USB 密钥未绑定到任何用户，请联系供电公司。", "This USB key is not bound to a customer; contact the power company."},
	"err.rate_limited":    {"请求过于频繁，请稍后再试。", "Too many requests; try again shortly."},
	"err.not_found":       {"未找到：该记录不存在或不属于您。", "Not found: it does not exist or is not yours."},
	"err.invalid_request": {"请求无效。", "The request was not valid."},
	"err.unavailable":     {"服务暂时不可用（供电公司系统或网关），请稍后再试。", "The service is unavailable (the power company's platform or the gateway); try again later."},
	"err.gateway":         {"网关返回了错误。", "The gateway answered with an error."},
	"err.unreachable":     {"无法连接网关，或网关未及时响应。", "The gateway cannot be reached or did not answer in time."},
	"err.auth":            {"身份验证失败。", "Authentication failed."},
	"err.token_absent":    {"未检测到 USB 密钥，请插入。", "No USB key found: insert your USB key."},
	"err.token_removed":   {"USB 密钥已拔出。", "The USB key was removed."},
	"err.pin_form":        {"密钥不接受这种格式的 PIN（长度或字符）。", "The key does not accept a PIN of that form (length or characters)."},
	"err.pin_expired":     {"密钥的 PIN 已过期，需要先修改。", "The key's PIN has expired and must be changed first."},
	"err.config":          {"客户端配置有误。", "The client's configuration is wrong."},
	"err.month":           {"月份格式应为 YYYY-MM。", "Months are written YYYY-MM."},
	"err.date":            {"日期格式应为 YYYY-MM-DD。", "Dates are written YYYY-MM-DD."},
	"err.order":           {"开始不能晚于结束。", "The start is after the end."},
	"err.range":           {"一次最多查询 %d 个月。", "At most %d months at a time."},

	"ov.title":        {"概览", "Overview"},
	"ov.alerts":       {"欠费提醒", "Arrears alerts"},
	"ov.noalerts":     {"没有欠费提醒。", "No arrears alerts."},
	"ov.more":         {"另有 %d 条提醒", "%d more alerts"},
	"ov.due":          {"应缴总额", "Balance due"},
	"ov.due.bills":    {"%d 张未缴账单", "%d unpaid bill(s)"},
	"ov.arrears":      {"欠费", "Arrears"},
	"ov.arrears.none": {"无欠费", "No arrears"},
	"ov.latefees":     {"其中违约金", "of which late fees"},
	"ov.overdue":      {"逾期账单", "Overdue bills"},
	"ov.oldest":       {"最早截止日", "Oldest due date"},
	"ov.next":         {"下一个缴费截止日", "Next due date"},
	"ov.next.none":    {"没有待到期的账单", "No bill coming due"},
	"ov.who":          {"用户信息", "Customer"},
	"ov.name":         {"户名", "Name"},
	"ov.customer":     {"户号", "Customer no."},
	"ov.account":      {"结算账号", "Account"},
	"ov.type":         {"用电类别", "Type"},
	"ov.voltage":      {"电压等级", "Voltage grade"},
	"ov.capacity":     {"合同容量", "Contract capacity"},
	"ov.contact":      {"联系人", "Contact"},
	"ov.address":      {"用电地址", "Address"},
	"ov.points":       {"计量点", "Metering points"},
	"ov.meter":        {"电表", "Meter"},
	"ov.location":     {"位置", "Location"},
	"ov.multiplier":   {"倍率", "Multiplier"},
	"ov.key":          {"USB 密钥", "USB key"},
	"ov.cert":         {"证书有效期至", "Certificate valid until"},
	"ov.cert.soon":    {"证书即将到期，请联系供电公司更新。", "The certificate expires soon; ask the power company to renew it."},
	"ov.view.bills":   {"查看账单", "See the bills"},

	"alert.critical": {"严重", "Critical"},
	"alert.warning":  {"警告", "Warning"},
	"alert.info":     {"提示", "Notice"},
	"alert.overdue":  {"%s 电费账单已逾期 %d 天（截止日 %s）：应缴 %s，其中违约金 %s。", "Bill for %s is %d day(s) overdue (due %s): %s to pay, including %s late fees."},
	"alert.suspend":  {"可能被停止供电，请尽快缴费。", "Supply may be suspended; please pay now."},
	"alert.grows":    {"违约金按日累计。", "Late fees grow every day."},
	"alert.soon":     {"%s 电费账单将于 %s 到期：应缴 %s。", "Bill for %s is due on %s: %s to pay."},

	"use.title":  {"用电量", "Consumption"},
	"use.from":   {"起始月份", "From"},
	"use.to":     {"结束月份", "To"},
	"use.show":   {"查询", "Show"},
	"use.unit":   {"单位：千瓦时（kWh），各计量点合计", "kWh, summed over the metering points"},
	"use.none":   {"该期间没有用电记录。", "No consumption recorded in this range."},
	"use.month":  {"月份", "Month"},
	"use.peak":   {"峰", "Peak"},
	"use.flat":   {"平", "Flat"},
	"use.valley": {"谷", "Valley"},
	"use.total":  {"合计", "Total"},
	"use.chart":  {"%s 至 %s 每月用电量（峰、平、谷）", "Monthly consumption %s to %s (peak, flat, valley)"},

	"bills.title": {"账单", "Bills"},

	"pay.title":               {"网上缴费", "Pay online"},
	"pay.intro":               {"选择要缴清的账单，或为预付费账户充值。USB 密钥签署支付指令，然后在银联页面完成支付。", "Choose the bills to pay in full, or top up the prepaid account. The USB key signs the payment instruction; you then pay on UnionPay's page."},
	"pay.bills":               {"待缴账单", "Unpaid bills"},
	"pay.none":                {"没有待缴账单。", "No unpaid bills."},
	"pay.or":                  {"或者为预付费账户充值（元）：", "or top up the prepaid account (yuan):"},
	"pay.submit":              {"签署并生成银联支付", "Sign and create the UnionPay payment"},
	"pay.choose.error":        {"请选择账单，或输入充值金额（二者选一）。", "Choose bills, or enter a top-up amount (one or the other)."},
	"pay.status.title":        {"支付状态", "Payment status"},
	"pay.open":                {"打开银联支付页面", "Open UnionPay's pay page"},
	"pay.waiting":             {"本页每 3 秒刷新一次，直到支付完成。", "This page refreshes every 3 seconds until the payment is done."},
	"pay.key":                 {"支付编号", "Payment key"},
	"pay.amount":              {"金额", "Amount"},
	"pay.status":              {"状态", "Status"},
	"pay.order":               {"银联订单号", "UnionPay order"},
	"pay.queryid":             {"银联交易号", "UnionPay transaction"},
	"pay.postedat":            {"入账时间", "Posted"},
	"pay.reason":              {"原因", "Reason"},
	"pay.deadline":            {"支付截止", "Pay before"},
	"pay.st.awaiting_payment": {"等待支付", "awaiting payment"},
	"pay.st.paid":             {"已支付，正在入账", "paid, being posted"},
	"pay.st.posted":           {"已入账", "posted"},
	"pay.st.refunding":        {"正在退款", "being refunded"},
	"pay.st.refunded":         {"已退款", "refunded"},
	"pay.st.expired":          {"已过期（未支付）", "expired (not paid)"},
	"pay.st.rejected":         {"已拒绝", "rejected"},
	"pay.st.verifying":        {"正在核对", "being checked"},
	"bills.open":              {"未缴账单", "Unpaid"},
	"bills.all":               {"全部账单", "All bills"},
	"bills.none":              {"没有未缴账单。", "No unpaid bills."},
	"bills.none.all":          {"没有账单。", "No bills."},
	"bills.id":                {"账单编号", "Bill"},
	"bills.period":            {"账期", "Period"},
	"bills.issued":            {"出账日期", "Issued"},
	"bills.duedate":           {"缴费截止日", "Due date"},
	"bills.kwh":               {"电量（kWh）", "Energy (kWh)"},
	"bills.due":               {"应缴金额", "Amount due"},
	"bills.status":            {"状态", "Status"},
	"bills.pdf":               {"下载电子账单（PDF）", "Download the e-bill (PDF)"},
	"bills.sum":               {"共 %d 张，应缴合计 %s", "%d bill(s), %s due in total"},
	"bill.title":              {"账单 %s", "Bill %s"},
	"bill.charges":            {"费用明细", "Charges"},
	"bill.energy":             {"电度电费", "Energy charge"},
	"bill.basic":              {"基本电费", "Basic charge"},
	"bill.late":               {"违约金", "Late fee"},
	"bill.paid":               {"已缴", "Paid"},
	"bill.back":               {"返回账单列表", "Back to the bills"},
	"bill.pdf.title":          {"电费电子账单", "Electricity e-bill"},
	"bill.pdf.note":           {"本电子账单由 GridPay 客户端根据供电公司系统的数据生成。", "This e-bill was produced by the GridPay client from the power company's records."},
	"bill.pdf.made":           {"生成时间", "Generated"},
	"pdf.customer":            {"用户信息", "Customer"},
	"pdf.bill":                {"账单信息", "Bill"},
	"status.open":             {"待缴", "Open"},
	"status.overdue":          {"已逾期", "Overdue"},
	"status.settled":          {"已结清", "Settled"},

	"hist.title":    {"缴费记录", "Payment history"},
	"hist.from":     {"起始日期", "From"},
	"hist.to":       {"结束日期", "To"},
	"hist.q":        {"搜索流水号或账单编号", "Search reference or bill"},
	"hist.status":   {"状态", "Status"},
	"hist.any":      {"全部", "Any"},
	"hist.show":     {"筛选", "Filter"},
	"hist.none":     {"没有符合条件的缴费记录。", "No payments match."},
	"hist.paidat":   {"缴费时间", "Paid at"},
	"hist.ref":      {"流水号", "Reference"},
	"hist.amount":   {"金额", "Amount"},
	"hist.channel":  {"渠道", "Channel"},
	"hist.applied":  {"缴费对象", "Applied to"},
	"hist.prepaid":  {"预付费账户", "Prepaid account"},
	"hist.sum":      {"共 %d 笔，已入账 %s（不含已冲正）", "%d payment(s), %s received (reversed ones not counted)"},
	"pay.posted":    {"已入账", "Posted"},
	"pay.reversed":  {"已冲正", "Reversed"},
	"chan.unionpay": {"银联在线", "UnionPay online"},
	"chan.counter":  {"营业厅柜台", "Service counter"},
	"chan.bank":     {"银行代收", "Bank"},

	"type.large_industry":     {"大工业用电", "Large industry"},
	"type.general_commercial": {"一般工商业用电", "General commercial"},
	"type.agricultural":       {"农业生产用电", "Agricultural"},
}

// tr is the text of key in lang; a missing key shows itself, so the gap is
// visible (and TestMessages fails).
func tr(lang, key string) string {
	m, ok := messages[key]
	if !ok {
		return key
	}
	if lang == langEN {
		return m.en
	}
	return m.zh
}

// trf is tr with fmt.Sprintf.
func trf(lang, key string, args ...any) string { return fmt.Sprintf(tr(lang, key), args...) }

// trOr translates prefix+value when the table knows it, else shows value.
func trOr(lang, prefix, value string) string {
	if _, ok := messages[prefix+value]; ok {
		return tr(lang, prefix+value)
	}
	return value
}

// Formatting shared by pages and the PDF. Amounts are money.Fen.Display;
// business dates are shown as the platform gives them (Asia/Shanghai
// calendar dates); instants in Asia/Shanghai time.

func uiInstant(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(platform.Shanghai).Format("2006-01-02 15:04")
}

func uiBillStatus(lang string, s platform.BillStatus) string { return trOr(lang, "status.", string(s)) }

func uiPaymentStatus(lang string, s platform.PaymentStatus) string {
	return trOr(lang, "pay.", string(s))
}

func uiCustomerType(lang string, t platform.CustomerType) string {
	if _, ok := messages["type."+string(t)]; ok {
		return tr(lang, "type."+string(t))
	}
	return customerType(t)
}

func uiAlertLevel(lang string, l api.AlertLevel) string { return trOr(lang, "alert.", string(l)) }
