import sys, re, collections
target = sys.argv[1]; depth = int(sys.argv[2]) if len(sys.argv) > 2 else 1
c = collections.Counter(); total = 0; hits = 0; stack = []
def short(f):
    m = re.search(r"([A-Za-z0-9_+`]+::[A-Za-z0-9_<>|]+)", f); return m.group(1) if m else f[:60]
def flush():
    global total, hits
    if not stack: return
    total += 1
    if re.search(target, stack[0]):
        hits += 1; c[" <- ".join(short(f) for f in stack[1:1+depth])] += 1
for line in sys.stdin:
    if not line.strip() or not line.startswith((" ", "\t")): flush(); stack.clear(); continue
    stack.append(line.strip())
flush()
print(f"{target}: {100.0*hits/total:.1f} % of samples")
for k, v in c.most_common(12): print(f"  {100.0*v/total:5.1f} %  {k}")
