# benchmedian.awk: reads `go test -bench` output and prints, per benchmark,
# the median, lowest and highest of one reported metric over its runs
# (-count N), after the output itself. Usage: go test ... -bench X -count 5 | awk -v unit=ours/scs -f scripts/benchmedian.awk
{ print }
/^Benchmark/ {
	for (i = 3; i < NF; i++) {
		if ($(i + 1) == unit) {
			name = $1
			sub(/-[0-9]+$/, "", name)
			if (!(name in n)) order[++names] = name
			v[name, ++n[name]] = $i + 0
		}
	}
}
END {
	for (k = 1; k <= names; k++) {
		name = order[k]
		m = n[name]
		for (i = 1; i <= m; i++) s[i] = v[name, i]
		for (i = 2; i <= m; i++) for (j = i; j > 1 && s[j - 1] > s[j]; j--) { t = s[j]; s[j] = s[j - 1]; s[j - 1] = t }
		med = (m % 2) ? s[(m + 1) / 2] : (s[m / 2] + s[m / 2 + 1]) / 2
		printf "%-50s %s median %.3f  (%d runs, %.3f-%.3f)\n", name, unit, med, m, s[1], s[m]
	}
}
