# Resident pages of an ELF binary mapped by process PID, per section: python3 sections.py PID BINARY
import sys, struct, subprocess, re
pid=int(sys.argv[1]); exe=sys.argv[2]
secs=[]
for l in subprocess.run(["readelf","-SW",exe],capture_output=True,text=True).stdout.splitlines():
    m=re.match(r'\s*\[\s*\d+\]\s+(\S+)\s+(\S+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)',l)
    if m and int(m.group(3),16):
        secs.append((m.group(1),int(m.group(3),16),int(m.group(4),16)))
res={}
pm=open(f"/proc/{pid}/pagemap","rb")
for name,a,sz in secs:
    n=0
    for pg in range(a//4096,(a+sz+4095)//4096):
        pm.seek(pg*8); v=struct.unpack("Q",pm.read(8))[0]
        if v>>63: n+=1
    res[name]=(n*4/1024, sz/1048576)
for k,(r,s) in res.items():
    if r>0.05: print(f"{k:14s} resident {r:6.1f} MiB of {s:6.1f}")
