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
	"nav.history":  {"交易记录", "History"},
	"nav.pay":      {"缴费", "Pay"},
	"nav.wallet":   {"电子钱包", "Wallet"},
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

	"ov.wallet":        {"电子钱包（USB 密钥）", "Wallet (USB key)"},
	"ov.prepaid":       {"预付费账户余额（可圈存）", "Prepaid account (can be loaded):"},
	"ov.wallet.seq":    {"联机交易序号 %d", "sequence %d"},
	"ov.wallet.none":   {"尚未圈存", "no load yet"},
	"ov.wallet.go":     {"圈存与电表卡", "Load and meter card"},
	"ov.wallet.unread": {"无法读取 USB 密钥上的钱包", "The wallet on the USB key cannot be read"},

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

	"hist.title":    {"交易记录：缴费与圈存", "History: payments and loads"},
	"hist.from":     {"起始日期", "From"},
	"hist.to":       {"结束日期", "To"},
	"hist.q":        {"搜索流水号、账单编号或圈存编号", "Search reference, bill or load"},
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

	"hist.kind":          {"类型", "Kind"},
	"hist.kind.all":      {"全部", "All"},
	"hist.kind.payments": {"缴费", "Payments"},
	"hist.kind.loads":    {"圈存", "Loads"},
	"hist.payments":      {"缴费", "Payments"},
	"hist.loads":         {"圈存（预付费账户 → USB 密钥电子钱包）", "Loads (prepaid account → wallet on the USB key)"},
	"hist.loads.none":    {"没有符合条件的圈存记录。", "No loads match."},
	"hist.loads.sum":     {"共 %d 笔，存入钱包 %s", "%d load(s), %s put in the wallet"},
	"hist.loads.note":    {"圈存状态以 GridPay 的记录为准；钱包余额来自本机由 USB 密钥签名的日志，在其他电脑上进行的圈存不显示余额。", "Load statuses are GridPay's records; the wallet balances come from this computer's log, signed by the USB key (none for loads made on other computers)."},
	"hist.load.loaded":   {"已存入钱包", "in the wallet"},
	"hist.load.refused":  {"未存入", "not loaded"},
	"hist.load.pending":  {"结果待定", "outcome pending"},

	"wal.title":            {"电子钱包", "Wallet"},
	"wal.onkey":            {"USB 密钥", "USB key"},
	"wal.balance":          {"钱包余额", "Wallet balance"},
	"wal.balance.note":     {"存于 USB 密钥，由 GridPay 签名", "On the USB key, signed by GridPay"},
	"wal.spent":            {"自上次圈存已转入电表卡 %s", "%s moved to the meter card since the last load"},
	"wal.sequence":         {"联机交易序号", "Online sequence number"},
	"wal.lastload":         {"上次圈存", "Last load"},
	"wal.noload":           {"尚未圈存", "No load yet"},
	"wal.sig":              {"GridPay 签名", "GridPay's signature"},
	"wal.sig.ok":           {"已验证", "verified"},
	"wal.sig.at":           {"签名时间", "signed"},
	"wal.sig.none":         {"尚无签名状态", "Nothing signed yet"},
	"wal.sig.none.note":    {"首次圈存后，钱包余额与序号由 GridPay 签名，每次读取都会验证。", "After the first load, GridPay signs the balance and sequence; they are verified at every read."},
	"wal.offline":          {"未能与 GridPay 核对（网关无法连接），以下为 USB 密钥上的数据。", "Not checked with GridPay (the gateway cannot be reached): this is what the USB key holds."},
	"wal.transfer.pending": {"有一笔 %s 的电表卡转账尚未完成：请插入电表卡并查询余额，完成后才能圈存。", "A transfer of %s to the meter card is unfinished: insert the card and read its balance; loads wait until then."},
	"wal.open":             {"待结算的圈存", "Loads being settled"},
	"wal.open.note":        {"GridPay 按 USB 密钥的联机交易序号结算：已存入钱包则确认，未存入则退回预付费账户，绝不重复扣款。", "GridPay settles by the USB key's sequence number: confirmed if the wallet took it, refunded to the prepaid account if not; never charged twice."},
	"wal.seq.short":        {"序号", "Sequence"},
	"wal.loadid":           {"圈存编号", "Load"},
	"wal.ref":              {"圈存编号 / 电表卡", "Load / card"},
	"wal.allow.until":      {"指令有效至", "allow valid until"},
	"wal.load.title":       {"圈存：从预付费账户存入钱包", "Load: from the prepaid account into the wallet"},
	"wal.load.intro":       {"从您在供电公司的预付费账户转入 USB 密钥上的电子钱包，可再转入电表卡。", "Moves money from your prepaid account at the power company onto the wallet of your USB key, from where it can go on to the meter card."},
	"wal.amount":           {"圈存金额（元）", "Amount (yuan)"},
	"wal.load.next":        {"下一步：核对并确认", "Next: check and confirm"},
	"wal.step1":            {"核对金额与扣款账户，并在 %s 内确认；超时视为取消。", "Check the amount and the account, and confirm within %s; no answer in time is no."},
	"wal.step2":            {"USB 密钥签署圈存请求（钱包余额、联机交易序号、账户、金额）。", "The USB key signs the load request (wallet balance, sequence number, account, amount)."},
	"wal.step3":            {"GridPay 从预付费账户扣款，并由加密机签发圈存指令；本程序验证指令后存入钱包。", "GridPay debits the prepaid account and its HSM signs the allow; this program checks it and credits the wallet."},
	"wal.step4":            {"USB 密钥签署执行回执，GridPay 确认。", "The USB key signs the receipt; GridPay confirms."},
	"wal.amount.empty":     {"请输入金额，例如 500.00。", "Enter an amount, e.g. 500.00."},
	"wal.amount.bad":       {"金额格式不正确：请输入元，最多两位小数，例如 500.00。", "Not an amount: write yuan with at most two decimals, e.g. 500.00."},
	"wal.amount.decimals":  {"金额最多两位小数（分为最小单位）。", "At most two decimals: the fen is the smallest unit."},
	"wal.amount.zero":      {"金额必须大于 0。", "The amount must be more than 0."},
	"wal.err.invalid":      {"USB 密钥上的钱包未通过 GridPay 签名校验，不能圈存或转账。请联系供电公司。", "The wallet on the USB key does not verify against GridPay's signature: no load or transfer is possible. Please contact the power company."},
	"wal.err.read":         {"无法读取 USB 密钥上的钱包。", "The wallet on the USB key cannot be read."},
	"wal.err.busy":         {"钱包正被另一项操作使用，请稍候再试。", "The wallet is busy with another operation; try again in a moment."},
	"wal.err.transfer":     {"有一笔 %s 的电表卡转账尚未完成，请先插入电表卡完成它。", "A transfer of %s to the meter card is unfinished: insert the card to finish it first."},
	"wal.seconds":          {"%d 秒", "%d s"},
	"wal.recent":           {"最近记录（本机日志，由 USB 密钥签名）", "Recent (this computer's log, signed by the USB key)"},
	"wal.recent.none":      {"本机还没有圈存或转账记录。", "No loads or transfers on this computer yet."},
	"wal.when":             {"时间", "When"},
	"wal.what":             {"类型", "What"},
	"wal.after":            {"钱包余额", "Wallet after"},
	"wal.note":             {"说明", "Note"},
	"wal.log.ok":           {"日志链与签名已验证。", "The log's chain and signatures verify."},
	"wal.log.bad":          {"本机圈存日志未通过校验：", "This computer's wallet log does not verify:"},
	"wal.log.all":          {"查看全部圈存记录", "All loads"},
	"wal.confirm.title":    {"确认圈存", "Confirm the load"},
	"wal.confirm.lead":     {"请核对以下信息。确认后，USB 密钥将签署圈存请求。", "Check the details below. When you confirm, the USB key signs the load request."},
	"wal.confirm.amount":   {"圈存金额", "Amount"},
	"wal.confirm.from":     {"扣款账户（预付费）", "From prepaid account"},
	"wal.confirm.to":       {"存入", "Into the wallet of"},
	"wal.confirm.within":   {"请在", "Confirm within"},
	"wal.confirm.secs":     {"秒内确认", "seconds"},
	"wal.confirm.until":    {"截止", "until"},
	"wal.confirm.note":     {"超过 %s 未确认即视为取消：不签名、不扣款。", "Not confirmed within %s means no: nothing is signed or taken."},
	"wal.confirm.expired":  {"确认已超时：不会签名或扣款。请返回电子钱包重新发起。", "The confirmation has expired: nothing will be signed or taken. Go back to the wallet to start again."},
	"wal.confirm.do":       {"确认并签名圈存", "Confirm and sign the load"},
	"wal.confirm.cancel":   {"取消", "Cancel"},
	"wal.result.title":     {"圈存结果", "Load result"},
	"wal.gridpay.status":   {"状态", "Status"},
	"wal.back":             {"返回电子钱包", "Back to the wallet"},
	"wal.res.first":        {"查看该次圈存的结果", "See that load's result"},
	"wal.res.confirmed.h":  {"圈存成功", "Loaded"},
	"wal.res.confirmed":    {"%s 已从预付费账户 %s 存入 USB 密钥上的电子钱包，GridPay 已确认执行回执。", "%s went from prepaid account %s onto the wallet on your USB key; GridPay confirmed the key's receipt."},
	"wal.res.credited.h":   {"已存入钱包，等待 GridPay 确认", "In the wallet; GridPay has yet to confirm"},
	"wal.res.credited":     {"%s 已存入电子钱包，但执行回执未送达 GridPay。无需重复圈存：下次登录或打开电子钱包时，USB 密钥的联机交易序号会让 GridPay 确认本次圈存。", "%s is in the wallet, but the receipt did not reach GridPay. Do not load again: at your next login or wallet visit the key's sequence number confirms this load."},
	"wal.res.refused.h":    {"未存入：USB 密钥拒绝了 GridPay 的圈存指令", "Not loaded: the USB key refused GridPay's allow"},
	"wal.res.refused":      {"钱包未变动。已从预付费账户扣除的 %s 将自动退回。", "The wallet is unchanged. The %s taken from the prepaid account goes back to it by itself."},
	"wal.res.refused.by":   {"钱包未变动。已从预付费账户扣除的 %s 将在指令过期（%s）后自动退回。", "The wallet is unchanged. The %s taken from the prepaid account goes back to it once the allow has expired (%s)."},
	"wal.res.declined.h":   {"GridPay 拒绝了本次圈存", "GridPay refused the load"},
	"wal.res.declined":     {"未扣款，钱包未变动。原因见下。", "Nothing was taken and the wallet is unchanged; the reason is below."},
	"wal.res.pending.h":    {"结果待定", "Outcome not known yet"},
	"wal.res.pending":      {"圈存请求已签名发出，但未收到 GridPay 的答复。不会重复扣款：下次登录或打开电子钱包时，按 USB 密钥的联机交易序号结算——已存入钱包则确认，未存入则退回预付费账户。", "The signed request went out but GridPay's answer did not come back. Nothing is charged twice: at your next login or wallet visit the key's sequence number settles it — confirmed if the wallet took it, refunded to the prepaid account if not."},
	"wal.res.expired.h":    {"确认已超时", "The confirmation expired"},
	"wal.res.expired":      {"超过 %s 未确认：未签名、未发送任何请求，未扣款。请重新发起圈存。", "Not confirmed within %s: nothing was signed, sent or taken. Start the load again."},
	"wal.res.used.h":       {"此确认已使用", "This confirmation was used already"},
	"wal.res.used":         {"每次确认只能使用一次：本次提交未再次圈存。", "A confirmation is good for one load: this submission loaded nothing more."},
	"wal.res.unknown.h":    {"确认无效", "Unknown confirmation"},
	"wal.res.unknown":      {"该确认不存在、已取消，或不属于本窗口的当前会话：未进行圈存。", "This confirmation does not exist, was cancelled, or belongs to another session of this window: nothing was loaded."},
	"wal.res.failed.h":     {"圈存未完成", "The load did not go through"},
	"wal.res.failed":       {"钱包未变动，原因见上。已扣的款项会按 USB 密钥的联机交易序号结算后退回，绝不重复扣款。", "The wallet is unchanged; the reason is above. Anything already taken is settled by the key's sequence number and refunded; nothing is charged twice."},

	"load.st.verifying":             {"正在核验", "being verified"},
	"load.st.debiting":              {"正在扣款", "debiting the prepaid account"},
	"load.st.signing":               {"正在签发指令", "allow being signed"},
	"load.st.awaiting_receipt":      {"等待执行回执", "awaiting the key's receipt"},
	"load.st.awaiting_contact":      {"等待 USB 密钥下次联机", "awaiting the key's next contact"},
	"load.st.cancelling":            {"正在撤销（指令过期后退款）", "being cancelled (refund once the allow expires)"},
	"load.st.confirmed":             {"已确认", "confirmed"},
	"load.st.refunded":              {"已退款", "refunded"},
	"load.st.rejected":              {"已拒绝", "rejected"},
	"load.st.applied":               {"已存入钱包", "in the wallet"},
	"load.st.applied_not_confirmed": {"已存入钱包，待确认", "in the wallet, not confirmed yet"},
	"load.st.sent":                  {"已发送，结果待定", "sent, outcome pending"},
	"load.st.abandoned":             {"已放弃（退款中）", "given up (being refunded)"},
	"load.st.refused":               {"被拒绝，未扣款", "refused, nothing taken"},
	"log.load":                      {"圈存", "load"},
	"log.load_refused":              {"圈存未存入", "load not applied"},
	"log.card_transfer":             {"转入电表卡", "to the meter card"},
	"log.card_transfer_undone":      {"转卡已撤销", "card transfer undone"},

	"card.title":               {"电表卡", "Meter card"},
	"card.number":              {"卡号", "Card number"},
	"card.issued":              {"绑定时间", "Bound"},
	"card.reader":              {"读卡器", "Reader"},
	"card.present":             {"已检测到电表卡", "card present"},
	"card.absent":              {"未检测到电表卡：请插入", "no card: insert the meter card"},
	"card.amount":              {"转入电表卡的金额（元）", "Amount to move onto the card (yuan)"},
	"card.pin":                 {"电表卡 PIN", "Meter card PIN"},
	"card.do.read":             {"仅查询余额", "Read the balance only"},
	"card.do.transfer":         {"转入电表卡", "Move onto the card"},
	"card.note":                {"USB 密钥与电表卡先相互认证；PIN 只交给电表卡，不会保存或显示。", "The USB key and the card authenticate each other first; the PIN goes to the card only and is never kept or shown."},
	"card.none":                {"此 USB 密钥未绑定电表卡。", "No meter card is bound to this USB key."},
	"card.label":               {"电表卡标签（卡套上印有）", "Meter card's token label (printed on its sleeve)"},
	"card.number.field":        {"电表卡卡号", "Meter card number"},
	"card.do.issue":            {"绑定电表卡", "Bind the meter card"},
	"card.issue.note":          {"将供电公司发放的空白电表卡插入读卡器：电表卡生成自己的密钥，并与 USB 密钥互存身份与公钥。", "Put the blank card the power company gave you in the reader: the card generates its own key, and the card and the USB key keep each other's identity and public key."},
	"card.label.empty":         {"请输入电表卡标签。", "Enter the meter card's token label."},
	"card.number.bad":          {"卡号应为 6 到 32 位数字，可含“-”。", "The card number is 6 to 32 digits, with '-' allowed."},
	"card.bound":               {"电表卡 %s 已与此 USB 密钥绑定。", "Meter card %s is now bound to this USB key."},
	"card.pin.empty":           {"请输入电表卡 PIN。", "Enter the meter card's PIN."},
	"card.moved":               {"已将 %s 转入电表卡 %s。", "Moved %s onto meter card %s."},
	"card.read":                {"电表卡余额已读取。", "The meter card's balance was read."},
	"card.wallet":              {"钱包余额", "Wallet"},
	"card.balance":             {"电表卡余额", "Meter card"},
	"card.total":               {"合计", "Together"},
	"card.recovered.completed": {"一笔被中断的转账已完成。", "An interrupted transfer was completed."},
	"card.recovered.undone":    {"一笔被中断的转账已撤销，金额回到钱包。", "An interrupted transfer was undone: the amount is back in the wallet."},
	"card.err.pin":             {"电表卡 PIN 错误。", "Wrong PIN for the meter card."},
	"card.err.locked":          {"电表卡 PIN 已锁定。", "The meter card's PIN is locked."},
	"card.err.pinform":         {"电表卡不接受这种格式的 PIN。", "The meter card does not accept a PIN of that form."},
	"card.err.absent":          {"未检测到电表卡：请将电表卡插入读卡器。", "No meter card found: put the card in the reader."},
	"card.err.short":           {"钱包余额不足。", "The wallet holds less than that."},
	"card.err.auth":            {"电表卡与 USB 密钥相互认证失败，未转账。", "The meter card and the USB key failed to authenticate each other; nothing was moved."},

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
