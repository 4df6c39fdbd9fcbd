package proxy

import (
	"fmt"

	"github.com/google/nftables/expr"
)

// Bytecode shows expressions one per line in the style of `nft --debug=netlink`, so a golden
// file records exactly what is sent to the kernel.
func Bytecode(exprs []expr.Any) []string {
	var out []string
	for _, e := range exprs {
		out = append(out, "[ "+exprString(e)+" ]")
	}
	return out
}

func exprString(e expr.Any) string {
	switch x := e.(type) {
	case *expr.Payload:
		base := map[expr.PayloadBase]string{expr.PayloadBaseLLHeader: "link", expr.PayloadBaseNetworkHeader: "network",
			expr.PayloadBaseTransportHeader: "transport"}[x.Base]
		return fmt.Sprintf("payload load %db @ %s header + %d => reg %d", x.Len, base, x.Offset, x.DestRegister)
	case *expr.Meta:
		name := map[expr.MetaKey]string{expr.MetaKeyL4PROTO: "l4proto", expr.MetaKeyMARK: "mark"}[x.Key]
		if name == "" {
			name = fmt.Sprint(x.Key)
		}
		if x.SourceRegister {
			return fmt.Sprintf("meta set %s with reg %d", name, x.Register)
		}
		return fmt.Sprintf("meta load %s => reg %d", name, x.Register)
	case *expr.Cmp:
		op := map[expr.CmpOp]string{expr.CmpOpEq: "eq", expr.CmpOpNeq: "neq", expr.CmpOpLt: "lt", expr.CmpOpLte: "lte",
			expr.CmpOpGt: "gt", expr.CmpOpGte: "gte"}[x.Op]
		return fmt.Sprintf("cmp %s reg %d 0x%x", op, x.Register, x.Data)
	case *expr.Bitwise:
		return fmt.Sprintf("bitwise reg %d = ( reg %d & 0x%x ) ^ 0x%x", x.DestRegister, x.SourceRegister, x.Mask, x.Xor)
	case *expr.Lookup:
		if x.IsDestRegSet {
			if x.DestRegister == 0 {
				return fmt.Sprintf("lookup reg %d set %s dreg 0", x.SourceRegister, x.SetName)
			}
			return fmt.Sprintf("lookup reg %d set %s dreg %d", x.SourceRegister, x.SetName, x.DestRegister)
		}
		if x.Invert {
			return fmt.Sprintf("lookup reg %d set %s 0x1", x.SourceRegister, x.SetName)
		}
		return fmt.Sprintf("lookup reg %d set %s", x.SourceRegister, x.SetName)
	case *expr.Limit:
		return fmt.Sprintf("limit rate %d/%ds burst %d type packets flags 0x0", x.Rate, x.Unit, x.Burst)
	case *expr.Log:
		return fmt.Sprintf("log prefix %s group %d snaplen %d qthreshold %d", x.Data, x.Group, x.Snaplen, x.QThreshold)
	case *expr.Fib:
		return fmt.Sprintf("fib daddr type => reg %d", x.Register)
	case *expr.Ct:
		name := map[expr.CtKey]string{expr.CtKeySTATE: "state", expr.CtKeySTATUS: "status"}[x.Key]
		return fmt.Sprintf("ct load %s => reg %d", name, x.Register)
	case *expr.Immediate:
		return fmt.Sprintf("immediate reg %d 0x%x", x.Register, x.Data)
	case *expr.Numgen:
		return fmt.Sprintf("numgen reg %d = random mod %d offset %d", x.Register, x.Modulus, x.Offset)
	case *expr.Dynset:
		return fmt.Sprintf("dynset update reg_key %d set %s sreg_data %d timeout %dms", x.SrcRegKey, x.SetName, x.SrcRegData, x.Timeout.Milliseconds())
	case *expr.NAT:
		return fmt.Sprintf("nat dnat ip addr_min reg %d proto_min reg %d flags 0x2", x.RegAddrMin, x.RegProtoMin)
	case *expr.Masq:
		return "masq"
	case *expr.Reject:
		return fmt.Sprintf("reject type %d code %d", x.Type, x.Code)
	case *expr.Verdict:
		switch x.Kind {
		case expr.VerdictJump:
			return "immediate reg 0 jump -> " + x.Chain
		case expr.VerdictGoto:
			return "immediate reg 0 goto -> " + x.Chain
		}
		return "immediate reg 0 " + verdictName(x.Kind)
	}
	return fmt.Sprintf("%T %+v", e, e)
}
