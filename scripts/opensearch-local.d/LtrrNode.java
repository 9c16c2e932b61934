import java.util.ArrayList;
import java.util.List;

import org.codelibs.opensearch.runner.OpenSearchRunner;

/**
 * Starts one OpenSearch node in this JVM through codelibs' OpenSearchRunner, which embeds the node
 * as a Node subclass with classpath plugins (no Bootstrap, so no root refusal, jar-hell or
 * security-manager checks). Every argument after the home directory is an OpenSearch setting,
 * key=value; a value with commas becomes a list.
 *
 * The plugin classes to load are the system property ltrr.plugins (comma-separated; k-NN by default).
 *
 * Usage: LtrrNode HOME key=value ...
 */
public final class LtrrNode {

    private LtrrNode() {
    }

    public static void main(final String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: LtrrNode HOME [setting=value ...]");
            System.exit(2);
        }
        final String home = args[0];
        final List<String[]> settings = new ArrayList<>();
        for (int i = 1; i < args.length; i++) {
            final int eq = args[i].indexOf('=');
            if (eq <= 0) {
                System.err.println("not a setting=value pair: " + args[i]);
                System.exit(2);
            }
            settings.add(new String[] { args[i].substring(0, eq), args[i].substring(eq + 1) });
        }

        final OpenSearchRunner runner = new OpenSearchRunner();
        runner.setMaxHttpPort(-1);
        runner.onBuild((index, builder) -> {
            for (final String[] kv : settings) {
                if (kv[1].contains(",")) {
                    builder.putList(kv[0], kv[1].split(","));
                } else {
                    builder.put(kv[0], kv[1]);
                }
            }
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                runner.close();
            } catch (final Exception e) {
                System.err.println("error while closing the node: " + e);
            }
        }));
        runner.build(OpenSearchRunner.newConfigs()
                .basePath(home)
                .numOfNode(1)
                .clusterName(valueOf(settings, "cluster.name", "ltrr-os"))
                .pluginTypes(System.getProperty("ltrr.plugins", "org.opensearch.knn.plugin.KNNPlugin")));
        while (!runner.isClosed()) {
            Thread.sleep(1000);
        }
    }

    private static String valueOf(final List<String[]> settings, final String key, final String fallback) {
        for (final String[] kv : settings) {
            if (kv[0].equals(key)) {
                return kv[1];
            }
        }
        return fallback;
    }
}
