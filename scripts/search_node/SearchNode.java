import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Arrays;
import java.util.Collection;
import java.util.Collections;
import java.util.List;

import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;

/** A single OpenSearch node on 127.0.0.1 for otsec's tests, built from Maven Central jars. */
public class SearchNode extends Node {
    SearchNode(Settings settings, Collection<Class<? extends Plugin>> plugins) {
        super(InternalSettingsPreparer.prepareEnvironment(settings, Collections.emptyMap(), null, () -> "otsec-test"),
              plugins, false);
    }

    @SuppressWarnings("unchecked")
    public static void main(String[] args) throws Exception {
        Path home = Paths.get(args[0]);
        int port = Integer.parseInt(args[1]);
        Settings settings = Settings.builder()
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("cluster.name", "otsec-test")
            .put("node.name", "otsec-test")
            .put("network.host", "127.0.0.1")
            .put("http.port", port)
            .put("transport.port", port + 100)
            .put("discovery.type", "single-node")
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .build();
        LogConfigurator.configureWithoutConfig(settings);
        List<Class<? extends Plugin>> plugins = Arrays.asList(
            (Class<? extends Plugin>) Class.forName("org.opensearch.transport.Netty4Plugin"),
            (Class<? extends Plugin>) Class.forName("org.opensearch.painless.PainlessPlugin"),
            (Class<? extends Plugin>) Class.forName("org.opensearch.analysis.common.CommonAnalysisPlugin"));
        Node node = new SearchNode(settings, plugins);
        node.start();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try { node.close(); } catch (Exception e) { }
        }));
        Thread.currentThread().join();
    }
}
