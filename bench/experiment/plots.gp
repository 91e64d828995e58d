# SPDX-License-Identifier: MIT
# plots.gp - the plots of tmem-experiment (docs/experiment.md), drawn from its
# TSV files.  bench/experiment/run.sh calls it as
#
#   gnuplot -e "summary='S.tsv'; phases='P.tsv'; outdir='DIR'; fmt='svg'; \
#               subtitle='...'" bench/experiment/plots.gp
#
# summary: tmem-experiment --tsv (one row per configuration, medians);
# phases:  tmem-experiment --phases-tsv (one row per phase, a column per configuration);
# fmt:     svg or png.  It writes DIR/experiment-{io,avoided,runtime,phases}.FMT.

if (!exists("fmt")) fmt = "svg"
if (!exists("subtitle")) subtitle = ""
if (fmt eq "png") {
    set terminal pngcairo size 900,520 font "DejaVu Sans,10" noenhanced
} else {
    set terminal svg size 900,520 font "DejaVu Sans,11" noenhanced background "white"
}
set datafile separator "\t"
set datafile missing "-"
set datafile columnheaders
set grid ytics lc rgb "#dddddd"
set border 3
set xtics nomirror
set ytics nomirror
set key top right
set style fill solid 0.85 border -1
set boxwidth 0.7

stats summary using 0 nooutput
n = STATS_records

# ---- 1: backing-store I/O per configuration (stacked) ------------------------
set output outdir."/experiment-io.".fmt
set title "Backing-store I/O over the measured phases (medians)\n".subtitle
set ylabel "pages read or written"
set style data histograms
set style histogram rowstacked
set yrange [0:*]
plot summary using (column("file_reads")):xtic(1) title "file reads" lc rgb "#4477aa", \
     '' using (column("swap_reads")) title "swap reads" lc rgb "#66ccee", \
     '' using (column("swap_writes") - column("shrink_writes")) title "swap writes (evictions)" lc rgb "#ee6677", \
     '' using (column("shrink_writes")) title "swap writes (frontswap self-shrink)" lc rgb "#ccbb44"

# ---- 2: I/O avoided per second and tmemd's CPU -------------------------------
set terminal push
if (fmt eq "png") {
    set terminal pngcairo size 900,760 font "DejaVu Sans,10" noenhanced
} else {
    set terminal svg size 900,760 font "DejaVu Sans,11" noenhanced background "white"
}
set output outdir."/experiment-avoided.".fmt
set multiplot layout 2,1 title "What tmem saves, and what it costs (medians)\n".subtitle
unset key
set style data histograms
set style histogram clustered gap 1
set title "backing-store I/O avoided per second, against static"
set ylabel "I/O per second"
set yrange [0:*]
set offsets 0, 0, graph 0.12, 0
avoided(row) = strcol(1) eq "static" ? NaN : column("avoided_per_s")
plot summary using (avoided(0)):xtic(1) lc rgb "#228833", \
     '' using 0:(avoided(0)):(sprintf("%.0f", avoided(0))) with labels offset 0,0.8
set title "tmemd's CPU time, % of one CPU (configurations with a tmemd)"
set ylabel "% of one CPU"
cpu(row) = strcol(1) eq "static" || strcol(1) eq "upper" ? NaN : column("daemon_cpu_pct")
plot summary using (cpu(0)):xtic(1) lc rgb "#aa3377", \
     '' using 0:(cpu(0)):(sprintf("%.1f%%", cpu(0))) with labels offset 0,0.8
unset multiplot
set offsets 0, 0, 0, 0
set terminal pop
set key top right

# ---- 3: run time ---------------------------------------------------------------
set output outdir."/experiment-runtime.".fmt
set title "Run time of the measured phases (median; bars: min-max of the runs)\n".subtitle
set ylabel "seconds"
set style data histograms
set style histogram errorbars gap 1 lw 1
unset key
set yrange [0:*]
plot summary using (column("runtime_s")):(column("runtime_min")):(column("runtime_max")):xtic(1) lc rgb "#4477aa"
set key top right

# ---- 4: per phase --------------------------------------------------------------
set output outdir."/experiment-phases.".fmt
set title "Backing-store I/O per phase (the median run of each configuration)\n".subtitle
set style data linespoints
set xlabel "phase (tenant k mod N is hot in phase k; the first N phases warm up, unmeasured)"
set ylabel "pages read or written in the phase"
set yrange [0:*]
set xtics 1
set key outside right
stats phases using (column("measured") == 0 ? 1 : 0) nooutput
warm = STATS_sum
if (warm > 0) {
    set object 1 rect from 0.5, graph 0 to warm + 0.5, graph 1 fc rgb "#eeeeee" fs solid 1.0 noborder behind
    set label 1 "warm-up" at warm / 2.0 + 0.5, graph 0.95 center
}
set xrange [0.5:*]
plot for [i=4:3+n] phases using 1:i title columnhead(i) lw 2 pt 7 ps 0.6
unset output
